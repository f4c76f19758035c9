//! A hash table packed into one sled tree: many small records share one sled key.
//!
//! Why: sled 0.34 keeps a heap stub for every page it ever allocated, and it splits a leaf
//! past 16 keys whatever their size, so its memory grows with the number of keys, outside
//! `cache_capacity`. With one key per message mapping that was ~85 B per mapping (see
//! `docs/store-memory.md`). Packing records into buckets of up to [`BUCKET_BYTES`] divides
//! it by the buckets' fill.
//!
//! Layout: the 64-bit hash space is cut into ranges, one sled key each (the range's start,
//! 8 bytes big-endian). Its value is a bucket: one byte of depth (the range is
//! 2^(64 − depth) hashes long), then entries `[hash: u64][length: u32][payload]`. A lookup
//! reads the bucket with the greatest start ≤ the hash. A bucket past capacity splits in
//! two: the upper half is written first, as a new key, then the lower half is rewritten
//! without it. A crash between the two leaves only copies no lookup reaches (hashes of the
//! upper half go to the new key), which the lower bucket's next split drops.
//!
//! Callers serialize writers; readers run alongside them and wait only while a split
//! switches halves.

use std::sync::{Arc, RwLock};

use sled::{IVec, Tree};

use super::corrupt;
use crate::store::StoreError;

/// A bucket's size past which it splits. A bucket is rewritten whole on each change and read
/// whole with its sled page, so this trades bytes written and read per change against keys
/// (memory) per record.
pub(super) const BUCKET_BYTES: usize = 1024;

const ENTRY_HEADER: usize = 12;

/// One packed table.
#[derive(Clone)]
pub(super) struct Packed {
    tree: Tree,
    name: &'static str,
    /// Held for reading by lookups, for writing while a split switches halves.
    splitting: Arc<RwLock<()>>,
}

/// A bucket as read: where it starts, how deep it is, and its entries.
struct Bucket {
    start: u64,
    depth: u8,
    entries: Vec<(u64, Vec<u8>)>,
}

impl Packed {
    pub(super) fn new(tree: Tree, name: &'static str) -> Self {
        Self {
            tree,
            name,
            splitting: Default::default(),
        }
    }

    /// The sled tree holding the buckets.
    pub(super) fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The payloads stored under `hash`, passed to `pick` in order until it returns one.
    pub(super) fn find<T>(
        &self,
        hash: u64,
        mut pick: impl FnMut(&[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let Some((_, value)) = self.read_bucket_of(hash)? else {
            return Ok(None);
        };
        for entry in Entries::of(self.name, &value)? {
            let (h, payload, _) = entry?;
            if h == hash
                && let Some(found) = pick(payload)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Every payload stored under `hash`, turned into `T` by `pick` (`None` skips it).
    pub(super) fn find_all<T>(
        &self,
        hash: u64,
        mut pick: impl FnMut(&[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.find(hash, |payload| {
            if let Some(found) = pick(payload)? {
                out.push(found);
            }
            Ok(None::<()>)
        })?;
        Ok(out)
    }

    /// Lets `change` edit the payloads stored under `hash` (add, remove, replace), then
    /// writes the bucket back if they changed. The caller serializes writers.
    pub(super) fn edit<T>(
        &self,
        hash: u64,
        change: impl FnOnce(&mut Vec<Vec<u8>>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (start, old) = match self.read_bucket_of(hash)? {
            Some((start, value)) => (start, value),
            None => (0, IVec::from(&[0u8][..])),
        };
        let mut before = Vec::new();
        for entry in Entries::of(self.name, &old)? {
            let (h, payload, _) = entry?;
            if h == hash {
                before.push(payload.to_vec());
            }
        }
        let mut after = before.clone();
        let result = change(&mut after)?;
        if after == before {
            return Ok(result);
        }
        // The other entries are copied as they are; this hash's entries go last.
        let mut value = Vec::with_capacity(
            old.len() + after.iter().map(|p| ENTRY_HEADER + p.len()).sum::<usize>(),
        );
        value.push(old[0]);
        for entry in Entries::of(self.name, &old)? {
            let (h, _, raw) = entry?;
            if h != hash {
                value.extend_from_slice(raw);
            }
        }
        for payload in &after {
            push_entry(&mut value, hash, payload);
        }
        if value.len() > BUCKET_BYTES {
            let bucket = self.decode(start, &value)?;
            let _switching = self.splitting.write().unwrap_or_else(|e| e.into_inner());
            self.write_splitting(bucket)?;
        } else {
            self.tree.insert(start.to_be_bytes(), value)?;
        }
        Ok(result)
    }

    /// Every payload in the table, bucket by bucket from `after` (exclusive), at most
    /// `buckets` buckets; with the last bucket's key, to go on from.
    pub(super) fn page(
        &self,
        after: Option<&IVec>,
        buckets: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<IVec>), StoreError> {
        let iter = match after {
            None => self.tree.iter(),
            Some(after) => self.tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_ref()),
                std::ops::Bound::Unbounded,
            )),
        };
        let mut payloads = Vec::new();
        let mut last = None;
        for entry in iter.take(buckets) {
            let (key, value) = entry?;
            for entry in Entries::of(self.name, &value)? {
                payloads.push(entry?.1.to_vec());
            }
            last = Some(key);
        }
        Ok((payloads, last))
    }

    fn read_bucket_of(&self, hash: u64) -> Result<Option<(u64, IVec)>, StoreError> {
        let _not_switching = self.splitting.read().unwrap_or_else(|e| e.into_inner());
        match self.tree.range(..=hash.to_be_bytes()).next_back() {
            None => Ok(None),
            Some(entry) => {
                let (key, value) = entry?;
                let start: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt(self.name, "a bucket key is not 8 bytes"))?;
                Ok(Some((u64::from_be_bytes(start), value)))
            }
        }
    }

    fn decode(&self, start: u64, value: &[u8]) -> Result<Bucket, StoreError> {
        let depth = *value
            .first()
            .ok_or_else(|| corrupt(self.name, "an empty bucket"))?;
        let entries = Entries::of(self.name, value)?
            .map(|e| e.map(|(h, p, _)| (h, p.to_vec())))
            .collect::<Result<_, _>>()?;
        Ok(Bucket {
            start,
            depth,
            entries,
        })
    }

    fn write(&self, bucket: &Bucket) -> Result<(), StoreError> {
        let size = 1 + bucket
            .entries
            .iter()
            .map(|(_, p)| ENTRY_HEADER + p.len())
            .sum::<usize>();
        let mut value = Vec::with_capacity(size);
        value.push(bucket.depth);
        for (hash, payload) in &bucket.entries {
            push_entry(&mut value, *hash, payload);
        }
        self.tree.insert(bucket.start.to_be_bytes(), value)?;
        Ok(())
    }

    /// Writes a bucket past capacity as two halves (each split again if need be): the upper
    /// half first, so every state a crash can leave answers every lookup.
    fn write_splitting(&self, mut bucket: Bucket) -> Result<(), StoreError> {
        let size: usize = bucket
            .entries
            .iter()
            .map(|(_, p)| ENTRY_HEADER + p.len())
            .sum();
        let one_hash = bucket.entries.windows(2).all(|w| w[0].0 == w[1].0);
        if size < BUCKET_BYTES || bucket.depth >= 64 || one_hash {
            return self.write(&bucket); // splitting cannot part equal hashes
        }
        let mid = bucket.start + (1u64 << (63 - bucket.depth));
        let depth = bucket.depth + 1;
        let (upper, lower): (Vec<_>, Vec<_>) =
            bucket.entries.drain(..).partition(|(h, _)| *h >= mid);
        // An upper half already there was written by a split a crash interrupted: it has
        // every change since, and these are its stale copies.
        if !self.tree.contains_key(mid.to_be_bytes())? {
            self.write_splitting(Bucket {
                start: mid,
                depth,
                entries: upper,
            })?;
        }
        self.write_splitting(Bucket {
            start: bucket.start,
            depth,
            entries: lower,
        })
    }
}

fn push_entry(value: &mut Vec<u8>, hash: u64, payload: &[u8]) {
    value.extend_from_slice(&hash.to_be_bytes());
    value.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    value.extend_from_slice(payload);
}

/// The entries of a bucket's value, in order: hash, payload, and the entry's bytes.
struct Entries<'a> {
    name: &'static str,
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    fn of(name: &'static str, value: &'a [u8]) -> Result<Self, StoreError> {
        match value.split_first() {
            Some((_depth, rest)) => Ok(Self { name, rest }),
            None => Err(corrupt(name, "an empty bucket")),
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(u64, &'a [u8], &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((header, rest)) = self.rest.split_at_checked(ENTRY_HEADER) else {
            self.rest = &[];
            return Some(Err(corrupt(self.name, "a truncated bucket entry")));
        };
        let hash = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        let Some((payload, rest)) = rest.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(corrupt(self.name, "a truncated bucket entry")));
        };
        let raw = &self.rest[..ENTRY_HEADER + len];
        self.rest = rest;
        Some(Ok((hash, payload, raw)))
    }
}

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

    fn table() -> (tempfile::TempDir, sled::Db, Packed) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let packed = Packed::new(db.open_tree("t").unwrap(), "t");
        (dir, db, packed)
    }

    fn put(table: &Packed, hash: u64, payload: &[u8]) {
        table
            .edit(hash, |entries| {
                entries.push(payload.to_vec());
                Ok(())
            })
            .unwrap();
    }

    fn get(table: &Packed, hash: u64) -> Vec<Vec<u8>> {
        table.find_all(hash, |p| Ok(Some(p.to_vec()))).unwrap()
    }

    #[test]
    fn thousands_of_records_split_into_buckets_and_all_stay_found() {
        let (_dir, _db, table) = table();
        let hasher = Hasher { key: [7; 16] };
        let n = 5_000u32;
        for i in 0..n {
            put(&table, hasher.hash(&[&i.to_be_bytes()]), &i.to_be_bytes());
        }
        for i in 0..n {
            assert_eq!(
                get(&table, hasher.hash(&[&i.to_be_bytes()])),
                [i.to_be_bytes().to_vec()]
            );
        }
        let buckets = table.tree.len();
        // 4-byte payloads, 16 bytes an entry: 64 fit a bucket, splits leave them half full.
        assert!(
            buckets >= n as usize / 64 && buckets <= n as usize / 16,
            "{buckets} buckets for {n} records"
        );
        let (all, _) = table.page(None, usize::MAX).unwrap();
        assert_eq!(all.len(), n as usize);
    }

    #[test]
    fn removing_and_replacing_change_only_their_hash() {
        let (_dir, _db, table) = table();
        put(&table, 1, b"a");
        put(&table, 1, b"b");
        put(&table, 2, b"c");
        table
            .edit(1, |e| {
                e.retain(|p| p != b"a");
                Ok(())
            })
            .unwrap();
        assert_eq!(get(&table, 1), [b"b".to_vec()]);
        assert_eq!(get(&table, 2), [b"c".to_vec()]);
        assert!(get(&table, 3).is_empty());
    }

    #[test]
    fn a_split_cut_short_by_a_crash_loses_nothing_and_its_copies_are_dropped_later() {
        let (_dir, _db, table) = table();
        let low = |i: u64| i; // all in the lower half of the first split
        let high = |i: u64| (1u64 << 63) + i;
        for i in 0..10 {
            put(&table, low(i), b"low");
            put(&table, high(i), b"high");
        }
        // What a crash after writing the upper half leaves: the upper half written, the
        // lower bucket (depth 0) still holding every entry.
        let upper = Bucket {
            start: 1 << 63,
            depth: 1,
            entries: (0..10).map(|i| (high(i), b"high".to_vec())).collect(),
        };
        table.write(&upper).unwrap();
        // A change to the upper half after the crash lands in the upper bucket.
        table
            .edit(high(3), |e| {
                e.clear();
                Ok(())
            })
            .unwrap();
        assert!(get(&table, high(3)).is_empty());
        // The lower half fills until it splits: the stale copy of high(3) is not revived.
        for i in 10..80 {
            put(&table, low(i), b"low");
        }
        assert!(get(&table, high(3)).is_empty());
        assert_eq!(get(&table, high(4)), [b"high".to_vec()]);
        for i in 0..80 {
            assert_eq!(get(&table, low(i)), [b"low".to_vec()], "low {i}");
        }
        let (all, _) = table.page(None, usize::MAX).unwrap();
        assert_eq!(all.len(), 80 + 9);
    }

    #[test]
    fn equal_hashes_past_capacity_stay_in_one_bucket() {
        let (_dir, _db, table) = table();
        let n = BUCKET_BYTES / 16 * 2;
        for i in 0..n as u32 {
            put(&table, 42, &i.to_be_bytes());
        }
        assert_eq!(get(&table, 42).len(), n);
        assert_eq!(table.tree.len(), 1);
    }

    #[test]
    fn hashes_differ_by_key_and_part_boundaries() {
        let a = Hasher { key: [1; 16] };
        let b = Hasher { key: [2; 16] };
        assert_ne!(a.hash(&[b"x"]), b.hash(&[b"x"]));
        assert_ne!(a.hash(&[b"ab", b"c"]), a.hash(&[b"a", b"bc"]));
    }
}
