//! The store's keyed hash, under which message mappings are found.

use sled::Tree;

use super::corrupt;
use crate::store::StoreError;

/// The keyed hash of `parts` for one store: SipHash-1-3 under a key made at the store's
/// creation, so remote IDs chosen to collide cannot pile up in one bucket.
#[derive(Clone)]
pub(super) struct Hasher {
    key: [u8; 16],
}

const HASH_KEY: &str = "packed_hash_key";

impl Hasher {
    /// The store's hasher, its key made and saved on first use.
    pub(super) fn of_store(meta: &Tree) -> Result<Self, StoreError> {
        if let Some(saved) = meta.get(HASH_KEY)? {
            let key = saved
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("meta", "the packed hash key is not 16 bytes"))?;
            return Ok(Self { key });
        }
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| StoreError::Io(e.to_string()))?;
        meta.insert(HASH_KEY, &key)?;
        Ok(Self { key })
    }

    /// The hash of `parts`, each length-prefixed so no two lists of parts run together.
    pub(super) fn hash(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher as _;
        let mut hasher = siphasher::sip::SipHasher13::new_with_key(&self.key);
        for part in parts {
            hasher.write(&(part.len() as u64).to_be_bytes());
            hasher.write(part);
        }
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_differ_by_key_and_part_boundaries() {
        let a = Hasher { key: [1; 16] };
        let b = Hasher { key: [2; 16] };
        assert_ne!(a.hash(&[b"x"]), b.hash(&[b"x"]));
        assert_ne!(a.hash(&[b"ab", b"c"]), a.hash(&[b"a", b"bc"]));
    }
}
