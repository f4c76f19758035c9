//! A stable 64-bit hash (FNV-1a) for keys that are persisted or sent to the homeserver.
//! `std`'s hasher may change between Rust releases; these values must not.

/// FNV-1a over several byte strings, each followed by a separator so `["ab","c"]` and
/// `["a","bc"]` differ.
pub(crate) fn fnv1a64<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    const PINNED_A: u64 = 620_310_408_636_712_809;

    #[test]
    fn known_value_and_separator() {
        // Pinned: persisted dedupe keys and derived txnIds depend on it.
        assert_eq!(super::fnv1a64([b"a".as_slice()]), PINNED_A);
        assert_ne!(
            super::fnv1a64([b"ab".as_slice(), b"c"]),
            super::fnv1a64([b"a".as_slice(), b"bc"])
        );
    }
}
