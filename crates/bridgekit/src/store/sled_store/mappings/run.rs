//! A sealed run: mappings sorted by hash in blocks of about [`BLOCK_BYTES`], written once,
//! read by key, deleted whole when a merge replaces it.
//!
//! Two sections per run: by event (hash of the event ID → the mapping, or a tombstone) and
//! by remote (hash of room and remote ID → part and event ID). Each section keeps in memory
//! the first hash of every block and a Bloom filter, so a lookup reads at most one block,
//! and a lookup of an absent hash almost never reads any.
//!
//! sled keys: `[run: u64][section: u8][block: u32]` for blocks, `[run: u64][0xFF]` for the
//! run's directory (counts, first hashes, filters), written after every block.

use std::sync::Arc;

use sled::{IVec, Tree};

use super::super::entries::{Entries, push_entry};
use super::bloom::Bloom;
use super::corrupt_run;
use crate::store::StoreError;

/// A block's size past which the writer starts the next one (entries of one hash stay in
/// one block). Blocks are values in sled leaves of up to 16 keys: 4 KiB keeps a leaf, the
/// unit sled reads and caches, at about 64 KiB.
pub(super) const BLOCK_BYTES: usize = 4096;

const TREE: &str = "msg_runs";
const DIRECTORY: u8 = 0xFF;

/// The two sections of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    ByEvent = 0,
    ByRemote = 1,
}

/// What the run keeps in memory of one section.
struct Directory {
    entries: u64,
    /// The first hash of each block.
    firsts: Vec<u64>,
    bloom: Bloom,
}

/// A sealed run, its directory loaded.
pub(super) struct Run {
    id: u64,
    tree: Tree,
    sections: [Directory; 2],
}

fn block_key(id: u64, section: Section, block: u32) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8] = section as u8;
    key[9..].copy_from_slice(&block.to_be_bytes());
    key
}

fn directory_key(id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8] = DIRECTORY;
    key
}

impl Run {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Entries in the by-event section: the run's size for merging.
    pub(super) fn events(&self) -> u64 {
        self.sections[Section::ByEvent as usize].entries
    }

    /// Entries in the by-remote section.
    pub(super) fn remotes(&self) -> u64 {
        self.sections[Section::ByRemote as usize].entries
    }

    /// Bytes its directory takes in memory.
    #[cfg(test)]
    pub(super) fn resident_bytes(&self) -> usize {
        self.sections
            .iter()
            .map(|d| d.bloom.bytes() + d.firsts.len() * 8)
            .sum()
    }

    /// Loads run `id`'s directory.
    pub(super) fn load(tree: &Tree, id: u64) -> Result<Self, StoreError> {
        let bytes = tree
            .get(directory_key(id))?
            .ok_or_else(|| corrupt_run(format!("run {id} has no directory")))?;
        let (by_event, rest) = decode_directory(&bytes)?;
        let (by_remote, rest) = decode_directory(rest)?;
        if !rest.is_empty() {
            return Err(corrupt_run(format!("run {id}: bytes after its directory")));
        }
        Ok(Self {
            id,
            tree: tree.clone(),
            sections: [by_event, by_remote],
        })
    }

    /// Calls `each` with every payload of `section` stored under `hash`, in the order
    /// written, until it returns `true`.
    pub(super) fn find(
        &self,
        section: Section,
        hash: u64,
        mut each: impl FnMut(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let directory = &self.sections[section as usize];
        if !directory.bloom.may_contain(hash) {
            return Ok(());
        }
        let after = directory.firsts.partition_point(|&first| first <= hash);
        let Some(block) = after.checked_sub(1) else {
            return Ok(());
        };
        let bytes = self.block(section, block)?;
        for entry in Entries::of_block(TREE, &bytes) {
            let (h, payload) = entry?;
            if h > hash {
                break;
            }
            if h == hash && each(payload)? {
                break;
            }
        }
        Ok(())
    }

    /// Number of blocks in `section`.
    pub(super) fn blocks(&self, section: Section) -> usize {
        self.sections[section as usize].firsts.len()
    }

    /// Block `n` of `section`.
    pub(super) fn block(&self, section: Section, n: usize) -> Result<IVec, StoreError> {
        self.tree
            .get(block_key(self.id, section, n as u32))?
            .ok_or_else(|| corrupt_run(format!("run {}: block {n} is missing", self.id)))
    }

    /// Removes every key of run `id` (blocks and directory, or what a crash left of them).
    pub(super) fn delete(tree: &Tree, id: u64) -> Result<(), StoreError> {
        for key in tree.scan_prefix(id.to_be_bytes()).keys() {
            tree.remove(key?)?;
        }
        Ok(())
    }
}

/// Reads one section's directory from the front of `bytes`.
fn decode_directory(bytes: &[u8]) -> Result<(Directory, &[u8]), StoreError> {
    let bad = || corrupt_run("a truncated run directory");
    let take_u64 = |b: &[u8]| -> Result<(u64, usize), StoreError> {
        let word = b.get(..8).ok_or_else(bad)?;
        Ok((u64::from_le_bytes(word.try_into().expect("8 bytes")), 8))
    };
    let (entries, _) = take_u64(bytes)?;
    let (blocks, _) = take_u64(&bytes[8..])?;
    let mut rest = &bytes[16..];
    let mut firsts = Vec::with_capacity(blocks.min(1 << 24) as usize);
    for _ in 0..blocks {
        firsts.push(take_u64(rest)?.0);
        rest = &rest[8..];
    }
    let (bloom, rest) = Bloom::decode(rest)?;
    Ok((
        Directory {
            entries,
            firsts,
            bloom,
        },
        rest,
    ))
}

/// Writes a run: the by-event entries, then the by-remote ones, each in hash order, then
/// [`RunWriter::finish`]. A run whose directory was not written is not a run: opening the
/// store deletes what it left (see the manifest's `doomed`).
pub(super) struct RunWriter {
    id: u64,
    tree: Tree,
    section: Section,
    block: Vec<u8>,
    blocks: u32,
    last: Option<u64>,
    current: Directory,
    done: Vec<Directory>,
    /// Expected by-remote entries, to size its filter when the section starts.
    remote_entries: usize,
}

impl RunWriter {
    /// A writer for run `id`, its filters sized for the given entry counts (upper bounds).
    pub(super) fn new(tree: &Tree, id: u64, event_entries: usize, remote_entries: usize) -> Self {
        Self {
            id,
            tree: tree.clone(),
            section: Section::ByEvent,
            block: Vec::with_capacity(BLOCK_BYTES + 512),
            blocks: 0,
            last: None,
            current: empty_directory(event_entries),
            done: Vec::new(),
            remote_entries,
        }
    }

    /// Appends an entry to the current section; hashes must not decrease.
    pub(super) fn push(&mut self, hash: u64, payload: &[u8]) -> Result<(), StoreError> {
        debug_assert!(
            self.last.is_none_or(|last| last <= hash),
            "entries out of order"
        );
        if self.last != Some(hash) {
            if self.block.len() >= BLOCK_BYTES {
                self.write_block()?;
            }
            self.current.bloom.insert(hash);
        }
        if self.block.is_empty() {
            self.current.firsts.push(hash);
        }
        push_entry(&mut self.block, hash, payload);
        self.current.entries += 1;
        self.last = Some(hash);
        Ok(())
    }

    fn write_block(&mut self) -> Result<(), StoreError> {
        self.tree.insert(
            block_key(self.id, self.section, self.blocks),
            &self.block[..],
        )?;
        self.block.clear();
        self.blocks += 1;
        Ok(())
    }

    /// Ends the by-event section; what is pushed next goes to the by-remote one.
    pub(super) fn start_remote_section(&mut self) -> Result<(), StoreError> {
        assert_eq!(
            self.section,
            Section::ByEvent,
            "one by-remote section per run"
        );
        self.end_section()?;
        self.section = Section::ByRemote;
        self.current = empty_directory(self.remote_entries);
        Ok(())
    }

    fn end_section(&mut self) -> Result<(), StoreError> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        self.blocks = 0;
        self.last = None;
        let section = std::mem::replace(&mut self.current, empty_directory(1));
        self.done.push(section);
        Ok(())
    }

    /// Writes the directory, which makes the run whole, and returns it loaded.
    pub(super) fn finish(mut self) -> Result<Arc<Run>, StoreError> {
        if self.section == Section::ByEvent {
            self.start_remote_section()?;
        }
        self.end_section()?;
        let mut bytes = Vec::new();
        for section in &self.done {
            bytes.extend_from_slice(&section.entries.to_le_bytes());
            bytes.extend_from_slice(&(section.firsts.len() as u64).to_le_bytes());
            for first in &section.firsts {
                bytes.extend_from_slice(&first.to_le_bytes());
            }
            section.bloom.encode(&mut bytes);
        }
        self.tree.insert(directory_key(self.id), bytes)?;
        let [by_event, by_remote]: [Directory; 2] = self
            .done
            .try_into()
            .unwrap_or_else(|_| unreachable!("two sections"));
        Ok(Arc::new(Run {
            id: self.id,
            tree: self.tree,
            sections: [by_event, by_remote],
        }))
    }
}

fn empty_directory(entries: usize) -> Directory {
    Directory {
        entries: 0,
        firsts: Vec::new(),
        bloom: Bloom::with_capacity(entries),
    }
}

/// Every entry of one section of a run, in hash order, a block at a time.
pub(super) struct SectionEntries {
    run: Arc<Run>,
    section: Section,
    next_block: usize,
    entries: std::vec::IntoIter<(u64, Vec<u8>)>,
}

impl SectionEntries {
    pub(super) fn new(run: Arc<Run>, section: Section) -> Self {
        Self {
            run,
            section,
            next_block: 0,
            entries: Vec::new().into_iter(),
        }
    }
}

impl Iterator for SectionEntries {
    type Item = Result<(u64, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.entries.next() {
                return Some(Ok(entry));
            }
            if self.next_block >= self.run.blocks(self.section) {
                return None;
            }
            let block = match self.run.block(self.section, self.next_block) {
                Ok(block) => block,
                Err(e) => return Some(Err(e)),
            };
            self.next_block += 1;
            let decoded: Result<Vec<_>, _> = Entries::of_block(TREE, &block)
                .map(|e| e.map(|(hash, payload)| (hash, payload.to_vec())))
                .collect();
            match decoded {
                Ok(entries) => self.entries = entries.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_finds_every_entry_and_streams_them_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree(TREE).unwrap();
        let mut writer = RunWriter::new(&tree, 3, 5_000, 10);
        // Hashes 0, 10, 20, … with two payloads at every 100th: equal hashes stay together.
        for n in 0..5_000u64 {
            writer.push(n * 10, format!("e{n}").as_bytes()).unwrap();
            if n % 100 == 0 {
                writer.push(n * 10, format!("e{n}b").as_bytes()).unwrap();
            }
        }
        writer.start_remote_section().unwrap();
        writer.push(7, b"r7").unwrap();
        let written = writer.finish().unwrap();
        let run = Run::load(&tree, 3).unwrap();
        assert!(run.blocks(Section::ByEvent) > 1);
        assert_eq!(run.events(), written.events());
        for n in (0..5_000u64).step_by(37).chain([4_900]) {
            let mut found = Vec::new();
            run.find(Section::ByEvent, n * 10, |p| {
                found.push(p.to_vec());
                Ok(false)
            })
            .unwrap();
            let mut want = vec![format!("e{n}").into_bytes()];
            if n % 100 == 0 {
                want.push(format!("e{n}b").into_bytes());
            }
            assert_eq!(found, want, "hash {}", n * 10);
        }
        let mut none = 0;
        run.find(Section::ByEvent, 15, |_| {
            none += 1;
            Ok(false)
        })
        .unwrap();
        run.find(Section::ByRemote, 10, |_| {
            none += 1;
            Ok(false)
        })
        .unwrap();
        assert_eq!(none, 0);
        let all: Vec<_> = SectionEntries::new(Arc::new(run), Section::ByEvent)
            .map(Result::unwrap)
            .collect();
        assert_eq!(all.len(), 5_050);
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0));

        Run::delete(&tree, 3).unwrap();
        assert!(tree.is_empty());
        assert!(Run::load(&tree, 3).is_err());
    }
}
