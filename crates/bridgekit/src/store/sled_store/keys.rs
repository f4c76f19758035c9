//! Composite keys: each part length-prefixed, so no ID (remote IDs may contain anything)
//! can run into the next part, and a prefix of parts is a prefix of bytes for scans.

/// The key of `parts`, in order.
pub(super) fn key(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The parts of a key written by [`key`]; `None` when it is malformed.
pub(super) fn parts(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let part = bytes.get(4..4 + len)?;
        out.push(String::from_utf8(part.to_vec()).ok()?);
        bytes = &bytes[4 + len..];
    }
    Some(out)
}

pub(super) fn decode_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_prefixes_nest() {
        let k = key(&["!room:x", "a\0b", ""]);
        assert_eq!(parts(&k).unwrap(), ["!room:x", "a\0b", ""]);
        assert!(k.starts_with(&key(&["!room:x", "a\0b"])));
        // "a" + "b" must not look like "ab".
        assert_ne!(key(&["a", "b"]), key(&["ab", ""]));
        assert_eq!(parts(&[0, 0, 0, 9, b'x']), None);
    }
}
