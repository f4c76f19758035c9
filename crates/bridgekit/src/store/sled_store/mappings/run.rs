//! A sealed run: mappings sorted by hash in blocks of about [`BLOCK_BYTES`], written once
//! into its own file, read by block, deleted whole when a merge replaces it.
//!
//! Two sections per run: by event (hash of the event ID → the mapping, or a tombstone) and
//! by remote (hash of room and remote ID → part and event ID). Each section keeps in memory
//! the first hash and the offset of every block and a Bloom filter, so a lookup reads at
//! most one block, and a lookup of an absent hash almost never reads any.
//!
//! File layout: the by-event blocks, the by-remote blocks, the directory (per section: entry
//! count, block count, first hashes, block bounds, filter), then a footer: the directory's
//! offset and length and [`MAGIC`].

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;

use super::super::entries::{Entries, push_entry};
use super::bloom::Bloom;
use super::corrupt_run;
use super::files::{RunDir, io, read_at};
use crate::store::StoreError;

/// A block's size past which the writer starts the next one (entries of one hash stay in
/// one block): one page-cache read of a few pages per lookup.
pub(super) const BLOCK_BYTES: usize = 4096;

/// Ends every run file; a file without it was not finished.
const MAGIC: [u8; 8] = *b"bkrun\0\0\x01";
const FOOTER: usize = 24;
/// Name used in corruption errors.
const NAME: &str = "mapping runs";

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
    /// Where each block starts in the file, then where the last one ends.
    bounds: Vec<u64>,
    bloom: Bloom,
}

impl Directory {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&(self.firsts.len() as u64).to_le_bytes());
        for word in self.firsts.iter().chain(&self.bounds) {
            out.extend_from_slice(&word.to_le_bytes());
        }
        self.bloom.encode(out);
    }

    /// Reads one section's directory from the front of `bytes`.
    fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), StoreError> {
        let mut rest = bytes;
        let mut take = || -> Result<u64, StoreError> {
            let (word, tail) = rest
                .split_at_checked(8)
                .ok_or_else(|| corrupt_run("a truncated run directory"))?;
            rest = tail;
            Ok(u64::from_le_bytes(word.try_into().expect("8 bytes")))
        };
        let entries = take()?;
        let blocks = take()? as usize;
        if blocks > bytes.len() / 16 {
            return Err(corrupt_run("a run directory with more blocks than bytes"));
        }
        let firsts = (0..blocks).map(|_| take()).collect::<Result<Vec<_>, _>>()?;
        let bounds = (0..=blocks)
            .map(|_| take())
            .collect::<Result<Vec<_>, _>>()?;
        if bounds.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt_run("a run directory with blocks out of order"));
        }
        let (bloom, rest) = Bloom::decode(rest)?;
        Ok((
            Self {
                entries,
                firsts,
                bounds,
                bloom,
            },
            rest,
        ))
    }

    fn empty(entries: usize, starts_at: u64) -> Self {
        Self {
            entries: 0,
            firsts: Vec::new(),
            bounds: vec![starts_at],
            bloom: Bloom::with_capacity(entries),
        }
    }
}

/// A sealed run, its directory loaded and its file open.
pub(super) struct Run {
    id: u64,
    file: File,
    sections: [Directory; 2],
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
            .map(|d| d.bloom.bytes() + (d.firsts.len() + d.bounds.len()) * 8)
            .sum()
    }

    /// Opens run `id` of `dir` and loads its directory.
    pub(super) fn load(dir: &RunDir, id: u64) -> Result<Self, StoreError> {
        let path = dir.finished(id);
        let file = File::open(&path).map_err(|e| io("opening", &path, e))?;
        let len = file.metadata().map_err(|e| io("reading", &path, e))?.len();
        let bad = |reason: &str| corrupt_run(format!("run {id}: {reason}"));
        if len < FOOTER as u64 {
            return Err(bad("shorter than its footer"));
        }
        let mut footer = [0u8; FOOTER];
        read_at(&file, &mut footer, len - FOOTER as u64).map_err(|e| io("reading", &path, e))?;
        let word = |n: usize| u64::from_le_bytes(footer[n * 8..n * 8 + 8].try_into().expect("8"));
        if footer[16..] != MAGIC {
            return Err(bad("not a finished run file"));
        }
        let (at, size) = (word(0), word(1));
        if at.checked_add(size) != Some(len - FOOTER as u64) {
            return Err(bad("its directory is not where the footer says"));
        }
        let mut bytes = vec![0u8; size as usize];
        read_at(&file, &mut bytes, at).map_err(|e| io("reading", &path, e))?;
        let (by_event, rest) = Directory::decode(&bytes)?;
        let (by_remote, rest) = Directory::decode(rest)?;
        if !rest.is_empty() {
            return Err(bad("bytes after its directory"));
        }
        if by_event.bounds.last() != by_remote.bounds.first() || by_remote.bounds.last() > Some(&at)
        {
            return Err(bad("blocks outside the file"));
        }
        Ok(Self {
            id,
            file,
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
        for entry in Entries::of_block(NAME, &bytes) {
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
    pub(super) fn block(&self, section: Section, n: usize) -> Result<Vec<u8>, StoreError> {
        let bounds = &self.sections[section as usize].bounds;
        let (Some(&start), Some(&end)) = (bounds.get(n), bounds.get(n + 1)) else {
            return Err(corrupt_run(format!("run {}: no block {n}", self.id)));
        };
        let mut bytes = vec![0u8; (end - start) as usize];
        read_at(&self.file, &mut bytes, start)
            .map_err(|e| StoreError::Io(format!("reading run {}: {e}", self.id)))?;
        Ok(bytes)
    }
}

/// Writes a run: the by-event entries, then the by-remote ones, each in hash order, then
/// [`RunWriter::finish`]. Until then the file is a partial one, removed if the writer is
/// dropped and at the latest when the store next opens.
pub(super) struct RunWriter {
    id: u64,
    dir: RunDir,
    out: BufWriter<File>,
    /// Bytes written to the file so far.
    written: u64,
    section: Section,
    block: Vec<u8>,
    last: Option<u64>,
    current: Directory,
    done: Vec<Directory>,
    /// Expected by-remote entries, to size its filter when the section starts.
    remote_entries: usize,
    finished: bool,
}

impl RunWriter {
    /// A writer for run `id` in `dir`, its filters sized for the given entry counts (upper
    /// bounds).
    pub(super) fn new(
        dir: &RunDir,
        id: u64,
        event_entries: usize,
        remote_entries: usize,
    ) -> Result<Self, StoreError> {
        let path = dir.partial(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io("creating", &path, e))?;
        Ok(Self {
            id,
            dir: dir.clone(),
            out: BufWriter::with_capacity(64 * 1024, file),
            written: 0,
            section: Section::ByEvent,
            block: Vec::with_capacity(BLOCK_BYTES + 512),
            last: None,
            current: Directory::empty(event_entries, 0),
            done: Vec::new(),
            remote_entries,
            finished: false,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(|e| io("writing", &self.dir.partial(self.id), e))?;
        self.written += bytes.len() as u64;
        Ok(())
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
        let block = std::mem::take(&mut self.block);
        self.write(&block)?;
        self.block = block;
        self.block.clear();
        self.current.bounds.push(self.written);
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
        self.current = Directory::empty(self.remote_entries, self.written);
        Ok(())
    }

    fn end_section(&mut self) -> Result<(), StoreError> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        self.last = None;
        let section = std::mem::replace(&mut self.current, Directory::empty(1, self.written));
        self.done.push(section);
        Ok(())
    }

    /// Writes the directory and the footer, syncs the file and gives it its finished name,
    /// which makes the run whole; returns it loaded.
    pub(super) fn finish(mut self) -> Result<Arc<Run>, StoreError> {
        if self.section == Section::ByEvent {
            self.start_remote_section()?;
        }
        self.end_section()?;
        let mut bytes = Vec::new();
        for section in &self.done {
            section.encode(&mut bytes);
        }
        let (at, size) = (self.written, bytes.len() as u64);
        bytes.extend_from_slice(&at.to_le_bytes());
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(&MAGIC);
        self.write(&bytes)?;
        let path = self.dir.partial(self.id);
        self.out.flush().map_err(|e| io("writing", &path, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| io("syncing", &path, e))?;
        self.dir.publish(self.id)?;
        self.finished = true;
        let file = self
            .out
            .get_ref()
            .try_clone()
            .map_err(|e| io("reopening", &path, e))?;
        let [by_event, by_remote]: [Directory; 2] = std::mem::take(&mut self.done)
            .try_into()
            .unwrap_or_else(|_| unreachable!("two sections"));
        Ok(Arc::new(Run {
            id: self.id,
            file,
            sections: [by_event, by_remote],
        }))
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(self.dir.partial(self.id));
        }
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
            let decoded: Result<Vec<_>, _> = Entries::of_block(NAME, &block)
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
        let temp = tempfile::tempdir().unwrap();
        let dir = RunDir::open(temp.path()).unwrap();
        let mut writer = RunWriter::new(&dir, 3, 5_000, 10).unwrap();
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
        let run = Run::load(&dir, 3).unwrap();
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

        dir.remove(3).unwrap();
        assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
        assert!(Run::load(&dir, 3).is_err());
    }
}
