//! Remote message part ↔ Matrix event mappings, unique both ways, kept as a log-structured
//! merge of sorted runs on sled.
//!
//! Why not a sled key (or a hash bucket) per mapping: sled keeps a heap stub for every page
//! it ever made, and a bucket per random hash means a read-modify-write of a random page on
//! every insert, a cache miss once the history outgrows the cache (see
//! `docs/store-memory.md`). Here a write touches only recent, sequential keys:
//!
//! - **log** (`msg_log`): sequence → one operation (a mapping, or the deletion of one). An
//!   insert is one sled insert at the log's end; it is durable with the store's next flush.
//! - **memtable**: the logged operations not yet in a run, in memory, answering lookups of
//!   recent messages (edits, replies, redactions mostly concern those). At [`SEAL_AT`]
//!   mappings it is sealed: written as a run, then its log records are removed.
//! - **runs** (a file each, see [`files`]): sorted blocks with a directory (first hashes
//!   and offsets, a Bloom filter per section), in memory for small runs and read from the
//!   file for large ones (see [`run`]), so memory does not grow with the history;
//!   newest first; merged
//!   [`workers::FANOUT`] at a time in the background. The manifest (one value) says which
//!   runs are live, so a seal or a merge takes effect in one write and a crash in between
//!   leaves only runs that the next open deletes.
//!
//! Lookups read the memtables, then each run whose filter admits the hash: a mapping that
//! does not exist (the usual answer to "is this message already bridged?") costs no disk
//! read. By-remote entries point to events and are checked against the event's mapping, so
//! a deleted mapping's by-remote entry answers for nothing.

mod bloom;
mod files;
mod manifest;
mod memtable;
mod merge;
mod placement;
mod run;
mod tree_runs;
mod workers;

pub(super) use placement::directory_budget;

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use ruma::{EventId, OwnedEventId, RoomId};
use sled::Tree;

use super::hashing::Hasher;
use super::keys::{decode_u64, key, parts};
use super::{corrupt, to_json};
use crate::store::StoreError;
use crate::store::records::MessageMapping;
use manifest::Manifest;
use memtable::{Memtable, read_event_payload, tombstone};
use run::{Run, Section};

/// Mappings a memtable takes before it is sealed into a run (about 2 MiB in memory).
#[cfg(not(test))]
const SEAL_AT: usize = 8_192;
/// Small in unit tests, so that they seal and merge through several size classes.
#[cfg(test)]
const SEAL_AT: usize = 256;

const LOG: &str = "msg_log";

fn corrupt_run(reason: impl ToString) -> StoreError {
    corrupt("mapping runs", reason)
}

/// One logged change.
enum Op {
    Put(MessageMapping),
    Delete(OwnedEventId),
}

impl Op {
    /// The by-event payload: what the log, the memtable and the runs hold.
    fn encode(&self) -> Vec<u8> {
        match self {
            Op::Put(mapping) => to_json(mapping),
            Op::Delete(event) => tombstone(event),
        }
    }

    fn event(&self) -> &EventId {
        match self {
            Op::Put(mapping) => &mapping.event_id,
            Op::Delete(event) => event,
        }
    }

    fn mapping(&self) -> Option<&MessageMapping> {
        match self {
            Op::Put(mapping) => Some(mapping),
            Op::Delete(_) => None,
        }
    }
}

/// A by-remote entry: which part, carried by which event.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReverseEntry {
    part: String,
    event: OwnedEventId,
}

impl ReverseEntry {
    fn encode(&self) -> Vec<u8> {
        key(&[&self.part, self.event.as_str()])
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match parts(bytes).as_deref() {
            Some([part, event]) => Ok(Self {
                part: part.clone(),
                event: EventId::parse(event).map_err(corrupt_run)?,
            }),
            _ => Err(corrupt_run("a malformed by-remote entry")),
        }
    }
}

fn event_hash(hasher: &Hasher, event: &EventId) -> u64 {
    hasher.hash(&[event.as_str().as_bytes()])
}

fn remote_hash_of(hasher: &Hasher, room: &RoomId, remote: &str) -> u64 {
    hasher.hash(&[room.as_str().as_bytes(), remote.as_bytes()])
}

fn remote_hash(hasher: &Hasher, mapping: &MessageMapping) -> u64 {
    remote_hash_of(hasher, &mapping.room_id, mapping.remote_id.as_str())
}

fn is_for(mapping: &MessageMapping, room_id: &RoomId, remote_id: &str, part: &str) -> bool {
    mapping.room_id == room_id && mapping.remote_id == remote_id && mapping.part == part
}

/// What lookups read.
struct Layers {
    /// Takes the writes.
    active: Memtable,
    /// Full, waiting for the sealer; oldest first.
    sealing: VecDeque<Arc<Memtable>>,
    /// Newest first.
    runs: Arc<Vec<Arc<Run>>>,
}

impl Layers {
    /// The memtables, newest first.
    fn memtables(&self) -> impl Iterator<Item = &Memtable> {
        std::iter::once(&self.active).chain(self.sealing.iter().rev().map(|m| &**m))
    }
}

/// State shared with the background threads.
struct Shared {
    log: Tree,
    runs_dir: files::RunDir,
    meta: Tree,
    hasher: Hasher,
    layers: RwLock<Layers>,
    manifest: Mutex<Manifest>,
    /// Signalled after each seal, for writers waiting on [`workers::MAX_SEALING`].
    sealed: Condvar,
    sealed_lock: Mutex<()>,
    /// The last seal's error, until a seal succeeds.
    seal_error: Mutex<Option<String>>,
    /// Makes seals fail (fault injection in unit tests).
    #[cfg(test)]
    fail_seals: AtomicBool,
    stopping: AtomicBool,
    /// Bytes of run directories kept in memory (see [`placement`]).
    directory_budget: usize,
}

impl Shared {
    fn layers(&self) -> RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn layers_mut(&self) -> RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn manifest(&self) -> MutexGuard<'_, Manifest> {
        self.manifest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new run ID, saved as doomed until its run is made live.
    fn allocate_run(&self) -> Result<u64, StoreError> {
        self.manifest().update(&self.meta, Manifest::allocate)
    }
}

/// The mapping tables. Cheap to clone; the background threads stop with the last clone.
#[derive(Clone)]
pub(super) struct MessageTables {
    shared: Arc<Shared>,
    /// Serializes writers (their uniqueness checks and appends); holds the next sequence.
    writer: Arc<Mutex<u64>>,
    workers: Arc<workers::Workers>,
}

impl MessageTables {
    /// Opens the tables of `db`, their runs in `runs_dir`: moves schema-7 runs out of sled,
    /// deletes what an interrupted seal or merge left, loads the live runs (their
    /// directories placed by [`placement`]) and replays the log into memtables.
    pub(super) fn open(
        db: &sled::Db,
        meta: &Tree,
        hasher: Hasher,
        runs_dir: &std::path::Path,
        directory_budget: usize,
    ) -> Result<Self, StoreError> {
        let log = db.open_tree(LOG)?;
        let runs_dir = files::RunDir::open(runs_dir)?;
        let mut manifest = Manifest::load(meta)?;
        if db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == tree_runs::TREE.as_bytes())
        {
            tree_runs::move_to_files(db, &runs_dir, &manifest.live)?;
        }
        runs_dir.keep_only(&manifest.live)?;
        if !manifest.doomed.is_empty() {
            manifest.doomed.clear();
            manifest.save(meta)?;
        }
        let runs = manifest
            .live
            .iter()
            .map(|&id| Run::load(&runs_dir, id).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let mut active = Memtable::default();
        let mut sealing = VecDeque::new();
        let mut next_seq = manifest.log_cut + 1;
        for entry in log.iter() {
            let (k, value) = entry?;
            let seq = decode_u64(&k);
            if seq <= manifest.log_cut {
                log.remove(k)?; // trimmed just before a crash
                continue;
            }
            let (event, mapping) = read_event_payload(&value)?;
            active.apply(
                seq,
                value.as_ref().into(),
                &event,
                mapping.as_ref(),
                &hasher,
            )?;
            next_seq = seq + 1;
            if active.len() >= SEAL_AT {
                sealing.push_back(Arc::new(std::mem::take(&mut active)));
            }
        }
        let shared = Arc::new(Shared {
            log,
            runs_dir,
            meta: meta.clone(),
            hasher,
            layers: RwLock::new(Layers {
                active,
                sealing,
                runs: Arc::new(runs),
            }),
            manifest: Mutex::new(manifest),
            sealed: Condvar::new(),
            sealed_lock: Mutex::new(()),
            seal_error: Mutex::new(None),
            #[cfg(test)]
            fail_seals: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            directory_budget,
        });
        placement::rebalance(&shared)?;
        Ok(Self {
            workers: Arc::new(workers::Workers::start(shared.clone())),
            shared,
            writer: Arc::new(Mutex::new(next_seq)),
        })
    }

    /// Waits until no full memtable waits for the sealer and no merge is due (or `timeout`
    /// passed); true when idle. For benchmarks and tests that measure a settled store.
    pub(super) fn wait_until_idle(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let idle = {
                let layers = self.shared.layers();
                layers.sealing.is_empty() && !workers::merge_due(&layers.runs)
            };
            if idle {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            self.workers.wake_sealer();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Bytes the runs' directories (first hashes and filters) take in memory, the number
    /// of live runs, and the bytes their directories would take all in memory.
    #[cfg(test)]
    pub(super) fn resident(&self) -> (usize, usize, usize) {
        let layers = self.shared.layers();
        let bytes = layers.runs.iter().map(|r| r.resident_bytes()).sum();
        let all = layers.runs.iter().map(|r| r.directory_bytes()).sum();
        (bytes, layers.runs.len(), all)
    }

    /// Whether no mapping (nor a deletion of one) was ever kept.
    pub(super) fn is_empty(&self) -> bool {
        self.shared.log.is_empty() && self.shared.layers().runs.is_empty()
    }

    /// Bytes the run files take on disk.
    pub(super) fn files_size(&self) -> u64 {
        self.shared.runs_dir.size()
    }

    /// Inserts `mapping`; [`StoreError::Conflict`] (changing nothing) when either side is
    /// mapped to something else. Inserting the same mapping again is a no-op.
    pub(super) fn insert(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        let mut next_seq = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (room, remote, part) = (
            &mapping.room_id,
            mapping.remote_id.as_str(),
            mapping.part.as_str(),
        );
        if let Some(other) = self.by_remote(room, remote, part)?
            && other.event_id != mapping.event_id
        {
            return Err(StoreError::Conflict(format!(
                "remote message {remote} (part {part:?}) in {room} is already mapped to {}",
                other.event_id
            )));
        }
        if let Some(existing) = self.by_event(&mapping.event_id)? {
            if to_json(&existing) == to_json(mapping) {
                return Ok(());
            }
            return Err(StoreError::Conflict(format!(
                "event {} is already mapped to another remote message",
                mapping.event_id
            )));
        }
        self.append(&mut next_seq, Op::Put(mapping.clone()))
    }

    /// Removes the mapping of `event_id`, returning it.
    pub(super) fn delete(&self, event_id: &EventId) -> Result<Option<MessageMapping>, StoreError> {
        let mut next_seq = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mapping) = self.by_event(event_id)? else {
            return Ok(None);
        };
        self.append(&mut next_seq, Op::Delete(event_id.to_owned()))?;
        Ok(Some(mapping))
    }

    /// Logs `op`, applies it to the active memtable and hands a full memtable to the sealer.
    fn append(&self, next_seq: &mut u64, op: Op) -> Result<(), StoreError> {
        self.workers.wait_for_sealer()?;
        let shared = &self.shared;
        let seq = *next_seq;
        let payload = op.encode();
        shared.log.insert(seq.to_be_bytes(), &payload[..])?;
        *next_seq += 1;
        let waiting = {
            let mut layers = shared.layers_mut();
            let payload = payload.into_boxed_slice();
            layers
                .active
                .apply(seq, payload, op.event(), op.mapping(), &shared.hasher)?;
            if layers.active.len() >= SEAL_AT {
                let full = std::mem::take(&mut layers.active);
                layers.sealing.push_back(Arc::new(full));
            }
            layers.sealing.len()
        };
        if waiting > 0 {
            self.workers.wake_sealer();
        }
        Ok(())
    }

    pub(super) fn by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        let hash = event_hash(&self.shared.hasher, event_id);
        let runs = {
            let layers = self.shared.layers();
            for memtable in layers.memtables() {
                if let Some(found) = memtable.event(event_id, hash)? {
                    return Ok(found);
                }
            }
            layers.runs.clone()
        };
        for run in runs.iter() {
            if let Some(found) = find_event(run, hash, event_id)? {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Every (part, event) written under the hash of `room_id` and `remote_id`, newest
    /// first, unchecked.
    fn reverse_entries(
        &self,
        room_id: &RoomId,
        remote_id: &str,
    ) -> Result<Vec<ReverseEntry>, StoreError> {
        let hash = remote_hash_of(&self.shared.hasher, room_id, remote_id);
        let mut out: Vec<ReverseEntry> = Vec::new();
        let runs = {
            let layers = self.shared.layers();
            for memtable in layers.memtables() {
                memtable.remote(hash, |payload| {
                    let entry = ReverseEntry::decode(payload)?;
                    if !out.contains(&entry) {
                        out.push(entry);
                    }
                    Ok(())
                })?;
            }
            layers.runs.clone()
        };
        for run in runs.iter() {
            run.find(Section::ByRemote, hash, |payload| {
                let entry = ReverseEntry::decode(payload)?;
                if !out.contains(&entry) {
                    out.push(entry);
                }
                Ok(false)
            })?;
        }
        Ok(out)
    }

    pub(super) fn by_remote(
        &self,
        room_id: &RoomId,
        remote_id: &str,
        part: &str,
    ) -> Result<Option<MessageMapping>, StoreError> {
        for entry in self.reverse_entries(room_id, remote_id)? {
            if entry.part == part
                && let Some(mapping) = self.by_event(&entry.event)?
                && is_for(&mapping, room_id, remote_id, part)
            {
                return Ok(Some(mapping));
            }
        }
        Ok(None)
    }

    pub(super) fn parts(
        &self,
        room_id: &RoomId,
        remote_id: &str,
    ) -> Result<Vec<MessageMapping>, StoreError> {
        let mut out: Vec<MessageMapping> = Vec::new();
        for entry in self.reverse_entries(room_id, remote_id)? {
            if let Some(mapping) = self.by_event(&entry.event)?
                && is_for(&mapping, room_id, remote_id, &entry.part)
                && !out.contains(&mapping)
            {
                out.push(mapping);
            }
        }
        out.sort_by(|a, b| a.part.as_str().cmp(b.part.as_str()));
        Ok(out)
    }

    /// A view of every mapping as it is now, for export (see [`Export::next_page`]).
    pub(super) fn export(&self) -> Export {
        let layers = self.shared.layers();
        let mut sources = vec![Source::Memory(Arc::new(layers.active.clone()))];
        sources.extend(layers.sealing.iter().rev().cloned().map(Source::Memory));
        sources.extend(layers.runs.iter().cloned().map(Source::Run));
        Export {
            sources,
            hasher: self.shared.hasher.clone(),
            source: 0,
            block: 0,
        }
    }
}

/// The mapping of `event` in `run`: `Some(None)` where the run says it was deleted.
fn find_event(
    run: &Run,
    hash: u64,
    event: &EventId,
) -> Result<Option<Option<MessageMapping>>, StoreError> {
    let mut found = None;
    run.find(Section::ByEvent, hash, |payload| {
        let (id, mapping) = read_event_payload(payload)?;
        if id == event {
            found = Some(mapping);
        }
        Ok(found.is_some())
    })?;
    Ok(found)
}

/// A layer, as export reads it.
enum Source {
    Memory(Arc<Memtable>),
    Run(Arc<Run>),
}

impl Source {
    /// Whether this layer says anything about `event` (a mapping or its deletion).
    fn knows(&self, hasher: &Hasher, event: &EventId) -> Result<bool, StoreError> {
        Ok(match self {
            Source::Memory(memtable) => memtable.event(event, event_hash(hasher, event))?.is_some(),
            Source::Run(run) => find_event(run, event_hash(hasher, event), event)?.is_some(),
        })
    }
}

/// Every live mapping once, read layer by layer; a mapping is the live one when no newer
/// layer knows its event. Holding the view keeps merged-away runs from being deleted.
pub(super) struct Export {
    sources: Vec<Source>,
    hasher: Hasher,
    source: usize,
    block: usize,
}

impl Export {
    /// The next mappings (about `at_least`, a memtable or a block at a time); empty at the
    /// end.
    pub(super) fn next_page(&mut self, at_least: usize) -> Result<Vec<MessageMapping>, StoreError> {
        let mut out = Vec::new();
        while out.len() < at_least && self.source < self.sources.len() {
            let at = self.source;
            let (candidates, source_done) = self.read(at, self.block)?;
            if source_done {
                self.source += 1;
                self.block = 0;
            } else {
                self.block += 1;
            }
            for mapping in candidates {
                if !self.shadowed(at, &mapping.event_id)? {
                    out.push(mapping);
                }
            }
        }
        Ok(out)
    }

    /// The mappings of layer `source` at `block` (a memtable is one block), and whether
    /// that was its last.
    fn read(&self, source: usize, block: usize) -> Result<(Vec<MessageMapping>, bool), StoreError> {
        match &self.sources[source] {
            Source::Memory(memtable) => Ok((memtable.mappings()?, true)),
            Source::Run(run) if block >= run.blocks(Section::ByEvent) => Ok((Vec::new(), true)),
            Source::Run(run) => {
                let bytes = run.block(Section::ByEvent, block)?;
                let mut mappings = Vec::new();
                for entry in super::entries::Entries::of_block("mapping runs", &bytes) {
                    let (_, payload) = entry?;
                    if let (_, Some(mapping)) = read_event_payload(payload)? {
                        mappings.push(mapping);
                    }
                }
                Ok((mappings, false))
            }
        }
    }

    /// Whether a layer newer than `source` knows `event`.
    fn shadowed(&self, source: usize, event: &EventId) -> Result<bool, StoreError> {
        for newer in &self.sources[..source] {
            if newer.knows(&self.hasher, event)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
pub(super) mod tests;
