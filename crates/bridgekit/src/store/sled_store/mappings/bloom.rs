//! A Bloom filter over the store's keyed 64-bit hashes: it answers "surely not here" for
//! most lookups of a mapping that a sealed run does not hold, so a miss (the usual answer
//! to "is this message already mapped?") reads no block from disk.
//!
//! Written here rather than taken from a crate: the inputs are already uniform keyed hashes
//! (SipHash under the store's key), so the filter only derives its probes from them, and it
//! must serialize into a sled value; the crates hash their items again.

use crate::store::StoreError;

/// Bits per entry: with [`PROBES`] probes about 0.8 % of absent hashes pass.
const BITS_PER_ENTRY: usize = 10;
const PROBES: u64 = 7;

/// A fixed-size Bloom filter.
pub(super) struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// A filter sized for `entries` hashes.
    pub(super) fn with_capacity(entries: usize) -> Self {
        let words = (entries.max(1) * BITS_PER_ENTRY).div_ceil(64);
        Self {
            words: vec![0; words],
        }
    }

    /// The bit positions of `hash`: double hashing from its two halves.
    fn probes(words: usize, hash: u64) -> impl Iterator<Item = usize> {
        let bits = (words * 64) as u64;
        let step = hash.rotate_left(32) | 1;
        (0..PROBES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) % bits) as usize)
    }

    pub(super) fn insert(&mut self, hash: u64) {
        for bit in Self::probes(self.words.len(), hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False when `hash` was surely never inserted.
    pub(super) fn may_contain(&self, hash: u64) -> bool {
        Self::probes(self.words.len(), hash)
            .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Bytes it takes in memory.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Appends the filter: its word count, then the words.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.words.len() as u64).to_le_bytes());
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// Reads a filter written by [`Bloom::encode`] from the front of `bytes`; returns it and
    /// what follows.
    pub(super) fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), StoreError> {
        let bad = || super::corrupt_run("a truncated Bloom filter");
        let (len, rest) = bytes.split_at_checked(8).ok_or_else(bad)?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (body, rest) = rest
            .split_at_checked(len.checked_mul(8).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if len == 0 {
            return Err(bad());
        }
        let words = body
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect();
        Ok((Self { words }, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(n: u64) -> u64 {
        // splitmix64: uniform test hashes.
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn inserted_hashes_always_pass_and_few_others_do() {
        let mut bloom = Bloom::with_capacity(10_000);
        for n in 0..10_000 {
            bloom.insert(mix(n));
        }
        assert!((0..10_000).all(|n| bloom.may_contain(mix(n))));
        let passed = (10_000..110_000)
            .filter(|&n| bloom.may_contain(mix(n)))
            .count();
        assert!(passed < 2_000, "{passed} of 100,000 absent hashes passed");
    }

    #[test]
    fn a_filter_reads_back_as_written() {
        let mut bloom = Bloom::with_capacity(100);
        bloom.insert(7);
        let mut bytes = Vec::new();
        bloom.encode(&mut bytes);
        bytes.push(42);
        let (back, rest) = Bloom::decode(&bytes).unwrap();
        assert!(back.may_contain(7));
        assert_eq!(back.words, bloom.words);
        assert_eq!(rest, [42]);
        assert!(Bloom::decode(&bytes[..10]).is_err());
    }
}
