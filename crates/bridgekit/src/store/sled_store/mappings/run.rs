//! A sealed run: mappings sorted by hash in blocks of about [`BLOCK_BYTES`], written once
//! into its own file, read by block, deleted whole when a merge replaces it.
//!
//! Two sections per run: by event (hash of the event ID → the mapping, or a tombstone) and
//! by remote (hash of room and remote ID → part and event ID). Each section has a directory
//! (the first hash and the offset of every block, and a Bloom filter), so a lookup reads at
//! most one block, and a lookup of an absent hash almost never reads any.
//!
//! Where a directory lives ([`Run::placed`], chosen by `placement.rs`): in memory, or in
//! its file, read at lookup from the page cache: one filter line for an absent hash, then a
//! group of first hashes and a block's bounds for a present one, memory keeping only every
//! [`GROUP`]th first hash. Directories take about 3.6 bytes per mapping; leaving the
//! largest runs' in their files keeps memory from growing with the history, at three small
//! reads more per lookup in those runs.
//!
//! File layout: the by-event blocks, the by-remote blocks, the directory (per section: entry
//! count, block count, first hashes, block bounds, filter), then a footer: the directory's
//! offset and length and the magic, whose last byte is the version: 1 wrote spread filters
//! (its runs stay in memory whatever their size), 2 lined ones.

use std::fs::File;
use std::sync::Arc;

use super::super::entries::Entries;
use super::bloom::{Bloom, LINE_WORDS, Layout};
use super::corrupt_run;
use super::files::{RunDir, io, read_at};
use crate::store::StoreError;

/// A block's size past which the writer starts the next one (entries of one hash stay in
/// one block): one page-cache read of a few pages per lookup.
pub(super) const BLOCK_BYTES: usize = 4096;

/// Blocks per group of first hashes read at once for a directory left on disk; memory keeps
/// the first of each group.
#[cfg(not(test))]
const GROUP: usize = 64;
#[cfg(test)]
const GROUP: usize = 4;

/// Ends every run file; a file without it was not finished. The last byte is the version.
const MAGIC: [u8; 8] = *b"bkrun\0\0\x02";
/// Version 1's magic: spread filters.
const MAGIC_V1: [u8; 8] = *b"bkrun\0\0\x01";
const FOOTER: usize = 24;
/// Name used in corruption errors.
const NAME: &str = "mapping runs";

/// The two sections of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    ByEvent = 0,
    ByRemote = 1,
}

/// What a loaded run knows of one section.
struct Directory {
    entries: u64,
    blocks: usize,
    /// The filter's size in words.
    bloom_words: u64,
    index: Index,
}

/// Where a section's directory is read from.
enum Index {
    /// All of it in memory.
    Resident {
        firsts: Vec<u64>,
        bounds: Vec<u64>,
        bloom: Bloom,
    },
    /// In the file, at these offsets; memory keeps every [`GROUP`]th first hash.
    OnDisk {
        sparse: Vec<u64>,
        firsts_at: u64,
        bounds_at: u64,
        bloom_at: u64,
    },
}

impl Directory {
    /// Reads one section's directory from `bytes[at..]`, which the file holds from offset
    /// `file_at`, keeping it in memory if `resident` (always for version 1); returns it,
    /// where the next one starts, and where its blocks start and end in the file.
    fn decode(
        bytes: &[u8],
        at: usize,
        file_at: u64,
        version: u8,
        resident: bool,
    ) -> Result<(Self, usize, (u64, u64)), StoreError> {
        let mut rest = &bytes[at..];
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
        let layout = if version == 1 {
            Layout::Spread
        } else {
            Layout::Lined
        };
        let span = (bounds[0], bounds[blocks]);
        let bloom_len_at = bytes.len() - rest.len();
        let (bloom_words, after) = Bloom::measure(rest, layout)?;
        let next = bytes.len() - after.len();
        let index = if layout == Layout::Lined && !resident {
            let firsts_at = file_at + at as u64 + 16;
            Index::OnDisk {
                sparse: firsts.iter().step_by(GROUP).copied().collect(),
                firsts_at,
                bounds_at: firsts_at + 8 * blocks as u64,
                bloom_at: file_at + bloom_len_at as u64 + 8,
            }
        } else {
            Index::Resident {
                firsts,
                bounds,
                bloom: Bloom::decode(rest, layout)?.0,
            }
        };
        Ok((
            Self {
                entries,
                blocks,
                bloom_words: bloom_words as u64,
                index,
            },
            next,
            span,
        ))
    }
}

/// A sealed run, its directory loaded (or located) and its file open.
pub(super) struct Run {
    id: u64,
    file: File,
    /// The file format's version.
    version: u8,
    /// Where the directories start in the file, and their length.
    directory_at: u64,
    directory_len: usize,
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
            .map(|d| match &d.index {
                Index::Resident {
                    firsts,
                    bounds,
                    bloom,
                } => bloom.bytes() + (firsts.len() + bounds.len()) * 8,
                Index::OnDisk { sparse, .. } => sparse.len() * 8,
            })
            .sum()
    }

    /// Whether its directories are in memory.
    pub(super) fn is_resident(&self) -> bool {
        matches!(self.sections[0].index, Index::Resident { .. })
    }

    /// Whether its directories can be left in the file (version 1's filters cannot).
    pub(super) fn can_leave_memory(&self) -> bool {
        self.version >= 2
    }

    /// Bytes its directories take when in memory.
    pub(super) fn directory_bytes(&self) -> usize {
        self.sections
            .iter()
            .map(|d| (2 * d.blocks + 1 + d.bloom_words as usize) * 8)
            .sum()
    }

    /// The same run with its directories in memory (`resident`) or in its file.
    pub(super) fn placed(&self, resident: bool) -> Result<Self, StoreError> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| StoreError::Io(format!("reopening run {}: {e}", self.id)))?;
        let mut bytes = vec![0u8; self.directory_len];
        self.read(&mut bytes, self.directory_at)?;
        Self::open(
            self.id,
            file,
            &bytes,
            self.directory_at,
            self.version,
            resident,
        )
    }

    /// Opens run `id` of `dir`, its directories left in the file (version 1's: in memory).
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
        let version = match footer[16..] {
            ref m if *m == MAGIC => 2,
            ref m if *m == MAGIC_V1 => 1,
            _ => return Err(bad("not a finished run file")),
        };
        let (at, size) = (word(0), word(1));
        if at.checked_add(size) != Some(len - FOOTER as u64) {
            return Err(bad("its directory is not where the footer says"));
        }
        let mut bytes = vec![0u8; size as usize];
        read_at(&file, &mut bytes, at).map_err(|e| io("reading", &path, e))?;
        Self::open(id, file, &bytes, at, version, false)
    }

    /// A run of `file` whose directories, `bytes`, start at offset `at`.
    fn open(
        id: u64,
        file: File,
        bytes: &[u8],
        at: u64,
        version: u8,
        resident: bool,
    ) -> Result<Self, StoreError> {
        let bad = |reason: &str| corrupt_run(format!("run {id}: {reason}"));
        let (by_event, next, event_span) = Directory::decode(bytes, 0, at, version, resident)?;
        let (by_remote, end, remote_span) = Directory::decode(bytes, next, at, version, resident)?;
        if end != bytes.len() {
            return Err(bad("bytes after its directory"));
        }
        if event_span.1 != remote_span.0 || remote_span.1 > at {
            return Err(bad("blocks outside the file"));
        }
        Ok(Self {
            id,
            file,
            version,
            directory_at: at,
            directory_len: bytes.len(),
            sections: [by_event, by_remote],
        })
    }

    /// Reads `buf.len()` bytes of the run's file at `offset`.
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), StoreError> {
        read_at(&self.file, buf, offset)
            .map_err(|e| StoreError::Io(format!("reading run {}: {e}", self.id)))
    }

    /// The `N` little-endian words of the run's file at `offset` (no allocation: this is
    /// on every lookup of a directory left on disk).
    fn read_words<const N: usize>(&self, offset: u64) -> Result<[u64; N], StoreError> {
        let mut buf = [[0u8; 8]; N];
        self.read(buf.as_flattened_mut(), offset)?;
        Ok(buf.map(u64::from_le_bytes))
    }

    /// The block of `section` that would hold `hash`, or `None` when the filter or the
    /// first hashes say that no block does.
    fn block_for(&self, section: Section, hash: u64) -> Result<Option<usize>, StoreError> {
        let directory = &self.sections[section as usize];
        match &directory.index {
            Index::Resident { firsts, bloom, .. } => {
                if !bloom.may_contain(hash) {
                    return Ok(None);
                }
                Ok(firsts
                    .partition_point(|&first| first <= hash)
                    .checked_sub(1))
            }
            Index::OnDisk {
                sparse,
                firsts_at,
                bloom_at,
                ..
            } => {
                let word = Bloom::line_of(directory.bloom_words, hash);
                let line = self.read_words::<LINE_WORDS>(bloom_at + word * 8)?;
                if !Bloom::line_admits(&line, hash) {
                    return Ok(None);
                }
                let Some(group) = sparse
                    .partition_point(|&first| first <= hash)
                    .checked_sub(1)
                else {
                    return Ok(None);
                };
                let start = group * GROUP;
                let count = GROUP.min(directory.blocks - start);
                let mut buf = [[0u8; 8]; GROUP];
                let firsts = &mut buf[..count];
                self.read(firsts.as_flattened_mut(), firsts_at + start as u64 * 8)?;
                let after = firsts.partition_point(|&first| u64::from_le_bytes(first) <= hash);
                Ok(after.checked_sub(1).map(|n| start + n))
            }
        }
    }

    /// Where block `n` of `section` starts and ends in the file.
    fn bounds(&self, section: Section, n: usize) -> Result<(u64, u64), StoreError> {
        let directory = &self.sections[section as usize];
        let missing = || corrupt_run(format!("run {}: no block {n}", self.id));
        match &directory.index {
            Index::Resident { bounds, .. } => match (bounds.get(n), bounds.get(n + 1)) {
                (Some(&start), Some(&end)) => Ok((start, end)),
                _ => Err(missing()),
            },
            Index::OnDisk { bounds_at, .. } => {
                if n >= directory.blocks {
                    return Err(missing());
                }
                let [start, end] = self.read_words::<2>(bounds_at + n as u64 * 8)?;
                Ok((start, end))
            }
        }
    }

    /// Calls `each` with every payload of `section` stored under `hash`, in the order
    /// written, until it returns `true`.
    pub(super) fn find(
        &self,
        section: Section,
        hash: u64,
        mut each: impl FnMut(&[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(block) = self.block_for(section, hash)? else {
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
        self.sections[section as usize].blocks
    }

    /// Block `n` of `section`.
    pub(super) fn block(&self, section: Section, n: usize) -> Result<Vec<u8>, StoreError> {
        let (start, end) = self.bounds(section, n)?;
        let mut bytes = vec![0u8; (end - start) as usize];
        self.read(&mut bytes, start)?;
        Ok(bytes)
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
mod tests;
mod writer;

pub(super) use writer::RunWriter;
