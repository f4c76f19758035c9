//! The two background threads of the mapping tables: the sealer turns full memtables into
//! runs and trims the log behind them; the compactor merges runs of one size class
//! [`FANOUT`] at a time, so lookups read few runs and a mapping is rewritten about
//! log₄(mappings / seal size) times in its life. Both stop when the tables are dropped; a
//! merge cut short is deleted at the next open.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::memtable::Memtable;
use super::merge::merge;
use super::run::{Run, RunWriter};
use super::{SEAL_AT, Shared};
use crate::store::StoreError;

/// Runs merged at once, and the ratio between size classes.
pub(super) const FANOUT: usize = 4;

/// Sealed memtables waiting for the sealer past which writers wait for it.
pub(super) const MAX_SEALING: usize = 4;

/// How long a writer waits for a sealer that is behind before its write fails, so that a
/// stall is visible to the caller (an event that is retried and reported) instead of a
/// write that never returns.
#[cfg(not(test))]
const SEAL_STALL_LIMIT: Duration = Duration::from_secs(30);
#[cfg(test)]
const SEAL_STALL_LIMIT: Duration = Duration::from_millis(300);

/// How long a writer waits when the last seal failed (a full disk, an I/O error): long
/// enough for one retry, short enough that writers queued behind it do not each wait
/// [`SEAL_STALL_LIMIT`].
#[cfg(not(test))]
const FAILED_SEAL_WAIT: Duration = Duration::from_secs(2);
#[cfg(test)]
const FAILED_SEAL_WAIT: Duration = Duration::from_millis(300);

/// Handles to the threads; dropping the last one stops and joins them.
pub(super) struct Workers {
    seal: Mutex<Option<mpsc::Sender<()>>>,
    compact: Mutex<Option<mpsc::Sender<()>>>,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    pub(super) fn start(shared: Arc<Shared>) -> Self {
        let (seal, seal_rx) = mpsc::channel();
        let (compact, compact_rx) = mpsc::channel::<()>();
        let sealer = {
            let shared = shared.clone();
            let compact = compact.clone();
            std::thread::Builder::new()
                .name("bridgekit-seal".into())
                .spawn(move || seal_loop(&shared, &seal_rx, &compact))
                .expect("can spawn the seal thread")
        };
        let compactor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("bridgekit-compact".into())
                .spawn(move || compact_loop(&shared, compact_rx))
                .expect("can spawn the compaction thread")
        };
        let _ = seal.send(());
        Self {
            seal: Mutex::new(Some(seal)),
            compact: Mutex::new(Some(compact)),
            shared,
            threads: Mutex::new(vec![sealer, compactor]),
        }
    }

    /// While the sealer is behind, waits rather than let memtables pile up in memory; fails
    /// (writing nothing) after [`SEAL_STALL_LIMIT`], or [`FAILED_SEAL_WAIT`] when it failed.
    pub(super) fn wait_for_sealer(&self) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let started = std::time::Instant::now();
        let mut guard = shared.sealed_lock.lock().unwrap_or_else(|e| e.into_inner());
        if shared.layers().sealing.len() > MAX_SEALING {
            self.wake_sealer(); // a failed seal is tried again at once
        }
        while shared.layers().sealing.len() > MAX_SEALING {
            let failure = shared
                .seal_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let limit = match failure {
                Some(_) => FAILED_SEAL_WAIT,
                None => SEAL_STALL_LIMIT,
            };
            if started.elapsed() >= limit {
                let cause = failure.unwrap_or_else(|| "it is behind".into());
                return Err(StoreError::Io(format!(
                    "message mappings are not being sealed into the store ({cause}); the write was not made"
                )));
            }
            guard = shared
                .sealed
                .wait_timeout(guard, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// Asks the sealer to look for full memtables.
    pub(super) fn wake_sealer(&self) {
        if let Some(seal) = &*self.seal.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = seal.send(());
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.seal.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.compact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        for thread in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = thread.join();
        }
    }
}

/// A background failure cannot be returned to anyone: it is logged, and the work is tried
/// again on the next wake-up (nothing is lost: the log and the old runs stay until the
/// new run is whole).
fn report(result: Result<(), StoreError>, what: &str) {
    if let Err(e) = result {
        tracing::error!(error = %e, "message mapping {what} failed; will retry");
    }
}

/// Seals on every wake-up, and every second while full memtables wait (so a failed seal is
/// retried even when no writer wakes the sealer: they wait for it).
fn seal_loop(shared: &Shared, wake: &mpsc::Receiver<()>, compact: &mpsc::Sender<()>) {
    loop {
        match wake.recv_timeout(Duration::from_secs(1)) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) if shared.layers().sealing.is_empty() => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let result = seal_all(shared);
        *shared.seal_error.lock().unwrap_or_else(|e| e.into_inner()) =
            result.as_ref().err().map(ToString::to_string);
        report(result, "sealing");
        let _ = compact.send(());
    }
}

/// Seals every full memtable, oldest first.
fn seal_all(shared: &Shared) -> Result<(), StoreError> {
    loop {
        let Some(memtable) = shared.layers().sealing.front().cloned() else {
            return Ok(());
        };
        seal(shared, &memtable)?;
        shared.sealed.notify_all();
    }
}

/// Writes `memtable` (the oldest sealing one) as the newest run, then trims the log.
fn seal(shared: &Shared, memtable: &Memtable) -> Result<(), StoreError> {
    #[cfg(test)]
    if shared.fail_seals.load(Ordering::Relaxed) {
        return Err(StoreError::Io("injected seal failure".into()));
    }
    let id = shared.allocate_run()?;
    let (by_event, by_remote) = memtable.entries()?;
    let mut writer = RunWriter::new(&shared.runs_dir, id, by_event.len(), by_remote.len())?;
    for (hash, payload) in &by_event {
        writer.push(*hash, payload)?;
    }
    writer.start_remote_section()?;
    for (hash, payload) in &by_remote {
        writer.push(*hash, payload)?;
    }
    let run = writer.finish()?;
    let cut = memtable.last_seq();
    {
        let mut manifest = shared.manifest();
        manifest.update(&shared.meta, |m| {
            m.doomed.retain(|&d| d != id);
            m.live.insert(0, id);
            m.log_cut = cut;
        })?;
        let mut layers = shared.layers_mut();
        layers.sealing.pop_front();
        let mut runs = Vec::with_capacity(layers.runs.len() + 1);
        runs.push(run);
        runs.extend(layers.runs.iter().cloned());
        layers.runs = Arc::new(runs);
    }
    for key in shared.log.range(..=cut.to_be_bytes()).keys() {
        shared.log.remove(key?)?;
    }
    Ok(())
}

fn compact_loop(shared: &Shared, wake: mpsc::Receiver<()>) {
    let mut released: Vec<Arc<Run>> = Vec::new();
    loop {
        match wake.recv_timeout(Duration::from_secs(1)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while wake.try_recv().is_ok() {}
        report(delete_unread(shared, &mut released), "cleanup");
        loop {
            if shared.stopping.load(Ordering::Relaxed) {
                return;
            }
            match compact_once(shared) {
                Ok(Some(merged_away)) => released.extend(merged_away),
                Ok(None) => break,
                Err(e) => {
                    report(Err(e), "merge");
                    break;
                }
            }
        }
        report(super::placement::rebalance(shared), "placing directories");
        report(delete_unread(shared, &mut released), "cleanup");
    }
}

/// Deletes the merged-away runs no reader holds any more.
fn delete_unread(shared: &Shared, released: &mut Vec<Arc<Run>>) -> Result<(), StoreError> {
    while let Some(at) = released.iter().position(|r| Arc::strong_count(r) == 1) {
        let run = released.swap_remove(at);
        shared.runs_dir.remove(run.id())?;
        shared
            .manifest()
            .update(&shared.meta, |m| m.doomed.retain(|&d| d != run.id()))?;
    }
    Ok(())
}

/// The size class of a run: how many times [`FANOUT`] its size is above a seal's.
fn class(events: u64) -> u32 {
    let mut class = 0;
    let mut bound = (SEAL_AT * FANOUT) as u64;
    while events >= bound {
        class += 1;
        bound = bound.saturating_mul(FANOUT as u64);
    }
    class
}

/// Merges the oldest [`FANOUT`] runs of the smallest class that has that many; returns
/// the runs it took out of the layers, or `None` when there was nothing to merge (or it was
/// stopped).
fn compact_once(shared: &Shared) -> Result<Option<Vec<Arc<Run>>>, StoreError> {
    let runs = shared.layers().runs.clone();
    let Some(range) = pick(&runs) else {
        return Ok(None);
    };
    let inputs = runs[range.clone()].to_vec();
    let oldest = range.end == runs.len();
    let id = shared.allocate_run()?;
    let stop = || shared.stopping.load(Ordering::Relaxed);
    let Some(merged) = merge(&shared.runs_dir, id, &inputs, oldest, &stop)? else {
        return Ok(None);
    };
    let ids: Vec<u64> = inputs.iter().map(|r| r.id()).collect();
    let mut manifest = shared.manifest();
    let at = manifest.update(&shared.meta, |m| {
        let at = m
            .live
            .iter()
            .position(|&r| r == ids[0])
            .expect("merged runs are live");
        m.live.splice(at..at + ids.len(), [id]);
        m.doomed.retain(|&d| d != id);
        m.doomed.extend(&ids);
        at
    })?;
    let mut layers = shared.layers_mut();
    let mut runs: Vec<Arc<Run>> = layers.runs.iter().cloned().collect();
    let replaced: Vec<Arc<Run>> = runs.splice(at..at + ids.len(), [merged]).collect();
    debug_assert!(replaced.iter().zip(&ids).all(|(r, &id)| r.id() == id));
    layers.runs = Arc::new(runs);
    Ok(Some(replaced))
}

/// Whether some size class holds [`FANOUT`] runs.
pub(super) fn merge_due(runs: &[Arc<Run>]) -> bool {
    pick(runs).is_some()
}

/// The runs to merge (newest first, so runs of one class sit together): the oldest
/// [`FANOUT`] of the smallest class with at least that many.
fn pick(runs: &[Arc<Run>]) -> Option<std::ops::Range<usize>> {
    let classes: Vec<u32> = runs.iter().map(|r| class(r.events())).collect();
    let mut best: Option<(u32, std::ops::Range<usize>)> = None;
    let mut start = 0;
    while start < classes.len() {
        let end = start
            + classes[start..]
                .iter()
                .take_while(|&&c| c == classes[start])
                .count();
        if end - start >= FANOUT && best.as_ref().is_none_or(|(c, _)| classes[start] < *c) {
            best = Some((classes[start], end - FANOUT..end));
        }
        start = end;
    }
    best.map(|(_, range)| range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_grow_by_the_fanout() {
        assert_eq!(class(1), 0);
        assert_eq!(class(SEAL_AT as u64), 0);
        assert_eq!(class((SEAL_AT * FANOUT) as u64), 1);
        assert_eq!(class((SEAL_AT * FANOUT * FANOUT) as u64 - 1), 1);
        assert_eq!(class((SEAL_AT * FANOUT * FANOUT) as u64), 2);
    }
}
