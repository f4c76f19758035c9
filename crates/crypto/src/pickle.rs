//! `encryption.pickle_key`: the crypto state encrypted at rest.
//!
//! Each value is sealed with AES-256-CTR under a fresh random nonce and authenticated with
//! HMAC-SHA-256 over the version, nonce and ciphertext (encrypt-then-MAC); both keys are
//! derived from the operator's passphrase with HKDF-SHA-256. A wrong key or a changed byte is
//! refused, never decrypted into garbage.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

const VERSION: u8 = 1;
const NONCE: usize = 16;
const TAG: usize = 32;

/// The keys derived from `encryption.pickle_key`.
#[derive(Clone)]
pub struct PickleKey {
    cipher: [u8; 32],
    mac: [u8; 32],
}

impl std::fmt::Debug for PickleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PickleKey(<redacted>)")
    }
}

impl PickleKey {
    /// Derives the keys from the operator's passphrase.
    pub fn from_passphrase(passphrase: &str) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"bridgekit crypto state"), passphrase.as_bytes());
        let mut okm = [0u8; 64];
        hk.expand(b"aes-256-ctr + hmac-sha-256", &mut okm)
            .expect("64 bytes is a valid HKDF-SHA-256 length");
        let mut cipher = [0u8; 32];
        let mut mac = [0u8; 32];
        cipher.copy_from_slice(&okm[..32]);
        mac.copy_from_slice(&okm[32..]);
        Self { cipher, mac }
    }

    fn tag(&self, sealed: &[u8]) -> [u8; TAG] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac).expect("any key length");
        mac.update(sealed);
        mac.finalize().into_bytes().into()
    }

    /// `version | nonce | ciphertext | tag`.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let mut out = Vec::with_capacity(1 + NONCE + plain.len() + TAG);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        Aes256Ctr::new(&self.cipher.into(), &nonce.into()).apply_keystream(&mut out[1 + NONCE..]);
        let tag = self.tag(&out);
        out.extend_from_slice(&tag);
        out
    }

    /// Reads what [`PickleKey::encrypt`] wrote.
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>, &'static str> {
        if sealed.len() < 1 + NONCE + TAG || sealed[0] != VERSION {
            return Err("not sealed with a pickle key: was encryption.pickle_key added later?");
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac).expect("any key length");
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| "sealed with another encryption.pickle_key (or damaged)")?;
        let nonce: [u8; NONCE] = body[1..1 + NONCE].try_into().expect("length checked");
        let mut plain = body[1 + NONCE..].to_vec();
        Aes256Ctr::new(&self.cipher.into(), &nonce.into()).apply_keystream(&mut plain);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let key = PickleKey::from_passphrase("correct horse");
        let sealed = key.encrypt(b"{\"secret\":1}");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "plaintext visible"
        );
        assert_eq!(key.decrypt(&sealed).unwrap(), b"{\"secret\":1}");
        assert!(
            PickleKey::from_passphrase("wrong")
                .decrypt(&sealed)
                .is_err()
        );
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(key.decrypt(&flipped).is_err());
        assert!(key.decrypt(b"{\"plain\":true}").is_err());
        assert_ne!(key.encrypt(b"x"), key.encrypt(b"x"), "nonces repeat");
    }
}
