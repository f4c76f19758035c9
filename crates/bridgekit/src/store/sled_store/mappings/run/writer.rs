//! Writing a run file: blocks as entries come, then the directories and the footer.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;

use super::super::super::entries::push_entry;
use super::super::bloom::Bloom;
use super::super::files::{RunDir, io};
use super::{BLOCK_BYTES, MAGIC, MAGIC_V1, Run, Section};
use crate::store::StoreError;

/// One section's directory as the writer builds it.
struct Building {
    entries: u64,
    /// The first hash of each block.
    firsts: Vec<u64>,
    /// Where each block starts in the file, then where the last one ends.
    bounds: Vec<u64>,
    bloom: Bloom,
}

impl Building {
    fn new(entries: usize, starts_at: u64) -> Self {
        Self {
            entries: 0,
            firsts: Vec::new(),
            bounds: vec![starts_at],
            bloom: Bloom::with_capacity(entries),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&(self.firsts.len() as u64).to_le_bytes());
        for word in self.firsts.iter().chain(&self.bounds) {
            out.extend_from_slice(&word.to_le_bytes());
        }
        self.bloom.encode(out);
    }
}

/// Writes a run: the by-event entries, then the by-remote ones, each in hash order, then
/// [`RunWriter::finish`]. Until then the file is a partial one, removed if the writer is
/// dropped and at the latest when the store next opens.
pub(in super::super) struct RunWriter {
    id: u64,
    dir: RunDir,
    out: BufWriter<File>,
    /// Bytes written to the file so far.
    written: u64,
    section: Section,
    block: Vec<u8>,
    last: Option<u64>,
    current: Building,
    done: Vec<Building>,
    /// Expected by-remote entries, to size its filter when the section starts.
    remote_entries: usize,
    /// The file format's version: 2, or 1 in tests of reading old files.
    version: u8,
    finished: bool,
}

impl RunWriter {
    /// A writer for run `id` in `dir`, its filters sized for the given entry counts (upper
    /// bounds).
    pub(in super::super) fn new(
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
            current: Building::new(event_entries, 0),
            done: Vec::new(),
            remote_entries,
            version: 2,
            finished: false,
        })
    }

    /// Makes this writer write a version-1 file (spread filters), as stores of schema 8
    /// before lined filters did.
    #[cfg(test)]
    pub(in super::super) fn version_1(mut self) -> Self {
        assert!(self.current.firsts.is_empty(), "before the first entry");
        self.version = 1;
        self.current.bloom = Bloom::spread(self.current.bloom.words());
        self
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(|e| io("writing", &self.dir.partial(self.id), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends an entry to the current section; hashes must not decrease.
    pub(in super::super) fn push(&mut self, hash: u64, payload: &[u8]) -> Result<(), StoreError> {
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
    pub(in super::super) fn start_remote_section(&mut self) -> Result<(), StoreError> {
        assert_eq!(
            self.section,
            Section::ByEvent,
            "one by-remote section per run"
        );
        self.end_section()?;
        self.section = Section::ByRemote;
        self.current = Building::new(self.remote_entries, self.written);
        #[cfg(test)]
        if self.version == 1 {
            self.current.bloom = Bloom::spread(self.current.bloom.words());
        }
        Ok(())
    }

    fn end_section(&mut self) -> Result<(), StoreError> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        self.last = None;
        let section = std::mem::replace(&mut self.current, Building::new(1, self.written));
        self.done.push(section);
        Ok(())
    }

    /// Writes the directory and the footer, syncs the file and gives it its finished name,
    /// which makes the run whole; returns it loaded, its directories left in the file (as
    /// [`Run::load`] does: placement brings the small ones into memory, and a large merge
    /// does not hold its whole directory twice meanwhile).
    pub(in super::super) fn finish(mut self) -> Result<Arc<Run>, StoreError> {
        if self.section == Section::ByEvent {
            self.start_remote_section()?;
        }
        self.end_section()?;
        let mut bytes = Vec::new();
        for section in &self.done {
            section.encode(&mut bytes);
        }
        let (at, size) = (self.written, bytes.len());
        bytes.extend_from_slice(&at.to_le_bytes());
        bytes.extend_from_slice(&(size as u64).to_le_bytes());
        bytes.extend_from_slice(if self.version == 1 { &MAGIC_V1 } else { &MAGIC });
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
        self.done.clear();
        Run::open(self.id, file, &bytes[..size], at, self.version, false).map(Arc::new)
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(self.dir.partial(self.id));
        }
    }
}
