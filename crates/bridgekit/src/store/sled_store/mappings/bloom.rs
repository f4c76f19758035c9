//! A Bloom filter over the store's keyed 64-bit hashes: it answers "surely not here" for
//! most lookups of a mapping that a sealed run does not hold, so a miss (the usual answer
//! to "is this message already mapped?") reads no block from disk.
//!
//! Every probe of a hash falls in one 64-byte line ([`Layout::Lined`]), so the filter of a
//! large run can stay in its file and be checked with one read of that line (see
//! `run.rs`). Run files of version 1 spread the probes over the whole filter
//! ([`Layout::Spread`]); they are read as written and rewritten by the next merge.
//!
//! Written here rather than taken from a crate: the inputs are already uniform keyed hashes
//! (SipHash under the store's key), so the filter only derives its probes from them, and it
//! must be checkable from one line read out of a file; the crates hash their items again.

use crate::store::StoreError;

/// Bits per entry: with [`PROBES`] probes about 1 % of absent hashes pass.
const BITS_PER_ENTRY: usize = 10;
const PROBES: u64 = 7;
/// Words in one line: 512 bits, a cache line, one small read from a file.
pub(super) const LINE_WORDS: usize = 8;
const LINE_BITS: u64 = (LINE_WORDS * 64) as u64;

/// Where a filter puts the probes of one hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Anywhere in the filter (run files of version 1).
    Spread,
    /// In one line of [`LINE_WORDS`] words, picked by the hash's high bits.
    Lined,
}

/// A fixed-size Bloom filter.
pub(super) struct Bloom {
    words: Vec<u64>,
    layout: Layout,
}

impl Bloom {
    /// A lined filter sized for `entries` hashes.
    pub(super) fn with_capacity(entries: usize) -> Self {
        let words = (entries.max(1) * BITS_PER_ENTRY)
            .div_ceil(64)
            .next_multiple_of(LINE_WORDS);
        Self {
            words: vec![0; words],
            layout: Layout::Lined,
        }
    }

    /// The bit positions of `hash` in a spread filter: double hashing from its two halves.
    fn spread_probes(words: usize, hash: u64) -> impl Iterator<Item = usize> {
        let bits = (words * 64) as u64;
        let step = hash.rotate_left(32) | 1;
        (0..PROBES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) % bits) as usize)
    }

    /// The first word of the line that holds `hash`'s probes, in a lined filter of `words`
    /// words.
    pub(super) fn line_of(words: u64, hash: u64) -> u64 {
        let lines = words / LINE_WORDS as u64;
        ((u128::from(hash) * u128::from(lines)) >> 64) as u64 * LINE_WORDS as u64
    }

    /// The bit positions of `hash` inside its line: nine bits each from a remix of the
    /// hash, so they do not follow the high bits that chose the line.
    fn line_probes(hash: u64) -> impl Iterator<Item = usize> {
        // splitmix64's finalizer: every output bit depends on every input bit.
        let mut z = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (0..PROBES).map(move |i| ((z >> (i * 9)) % LINE_BITS) as usize)
    }

    pub(super) fn insert(&mut self, hash: u64) {
        match self.layout {
            Layout::Spread => {
                for bit in Self::spread_probes(self.words.len(), hash) {
                    self.words[bit / 64] |= 1 << (bit % 64);
                }
            }
            Layout::Lined => {
                let line = Self::line_of(self.words.len() as u64, hash) as usize;
                for bit in Self::line_probes(hash) {
                    self.words[line + bit / 64] |= 1 << (bit % 64);
                }
            }
        }
    }

    /// False when `hash` was surely never inserted.
    pub(super) fn may_contain(&self, hash: u64) -> bool {
        match self.layout {
            Layout::Spread => Self::spread_probes(self.words.len(), hash)
                .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0),
            Layout::Lined => {
                let line = Self::line_of(self.words.len() as u64, hash) as usize;
                Self::line_admits(&self.words[line..line + LINE_WORDS], hash)
            }
        }
    }

    /// False when `hash` was surely never inserted into the lined filter whose line
    /// [`Bloom::line_of`] `hash` is `line`.
    pub(super) fn line_admits(line: &[u64], hash: u64) -> bool {
        Self::line_probes(hash).all(|bit| line[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Bytes it takes in memory.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Its size in words.
    #[cfg(test)]
    pub(super) fn words(&self) -> usize {
        self.words.len()
    }

    /// An empty spread filter of `words` words, as version-1 run files have.
    #[cfg(test)]
    pub(super) fn spread(words: usize) -> Self {
        Self {
            words: vec![0; words],
            layout: Layout::Spread,
        }
    }

    /// Appends the filter: its word count, then the words.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.words.len() as u64).to_le_bytes());
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// Checks the filter written by [`Bloom::encode`] at the front of `bytes` without
    /// reading it: returns its word count and what follows it.
    pub(super) fn measure(bytes: &[u8], layout: Layout) -> Result<(usize, &[u8]), StoreError> {
        let bad = || super::corrupt_run("a truncated Bloom filter");
        let (len, rest) = bytes.split_at_checked(8).ok_or_else(bad)?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (_, rest) = rest
            .split_at_checked(len.checked_mul(8).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if len == 0 || (layout == Layout::Lined && !len.is_multiple_of(LINE_WORDS)) {
            return Err(bad());
        }
        Ok((len, rest))
    }

    /// Reads a filter written by [`Bloom::encode`] from the front of `bytes`; returns it and
    /// what follows.
    pub(super) fn decode(bytes: &[u8], layout: Layout) -> Result<(Self, &[u8]), StoreError> {
        let (len, rest) = Self::measure(bytes, layout)?;
        let words = bytes[8..8 + len * 8]
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect();
        Ok((Self { words, layout }, rest))
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

    /// How many of 100,000 absent hashes pass a filter of 10,000.
    fn false_passes(mut bloom: Bloom) -> usize {
        for n in 0..10_000 {
            bloom.insert(mix(n));
        }
        assert!((0..10_000).all(|n| bloom.may_contain(mix(n))));
        (10_000..110_000)
            .filter(|&n| bloom.may_contain(mix(n)))
            .count()
    }

    #[test]
    fn inserted_hashes_always_pass_and_few_others_do() {
        let passed = false_passes(Bloom::with_capacity(10_000));
        assert!(passed < 2_000, "{passed} of 100,000 absent hashes passed");
        let passed = false_passes(Bloom::spread((10_000 * BITS_PER_ENTRY).div_ceil(64)));
        assert!(passed < 2_000, "{passed} of 100,000 passed a spread filter");
    }

    #[test]
    fn one_line_answers_for_a_lined_filter() {
        let mut bloom = Bloom::with_capacity(5_000);
        for n in 0..5_000 {
            bloom.insert(mix(n));
        }
        let words = bloom.words.len() as u64;
        for n in 0..20_000 {
            let line = Bloom::line_of(words, mix(n)) as usize;
            assert_eq!(
                Bloom::line_admits(&bloom.words[line..line + LINE_WORDS], mix(n)),
                bloom.may_contain(mix(n))
            );
        }
    }

    #[test]
    fn a_filter_reads_back_as_written() {
        let mut bloom = Bloom::with_capacity(100);
        bloom.insert(7);
        let mut bytes = Vec::new();
        bloom.encode(&mut bytes);
        bytes.push(42);
        let (back, rest) = Bloom::decode(&bytes, Layout::Lined).unwrap();
        assert!(back.may_contain(7));
        assert_eq!(back.words, bloom.words);
        assert_eq!(rest, [42]);
        assert!(Bloom::decode(&bytes[..10], Layout::Lined).is_err());
        // A lined filter is whole lines.
        let mut odd = Vec::new();
        odd.extend_from_slice(&3u64.to_le_bytes());
        odd.extend_from_slice(&[0; 24]);
        assert!(Bloom::decode(&odd, Layout::Lined).is_err());
        assert!(Bloom::decode(&odd, Layout::Spread).is_ok());
    }
}
