//! Merging runs: several sorted runs stream into one, block by block, so a merge holds a
//! block per input in memory whatever the runs' sizes. Where runs disagree the newest wins;
//! tombstones are dropped once no older run is left for them to hide.

use std::iter::Peekable;
use std::sync::Arc;

use super::files::RunDir;
use super::memtable::read_event_payload;
use super::run::{Run, RunWriter, Section, SectionEntries};
use crate::store::StoreError;

/// How often (in hashes) a merge checks whether the store is closing.
const STOP_CHECK: usize = 1024;

/// Merges `inputs` (newest first) into a new run `id`. `oldest` says the inputs include
/// the store's oldest run, so deletions have nothing left to hide. `None` when `stop`
/// asked it to give up (what it wrote is deleted with the doomed run `id`).
pub(super) fn merge(
    dir: &RunDir,
    id: u64,
    inputs: &[Arc<Run>],
    oldest: bool,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Arc<Run>>, StoreError> {
    let events = inputs.iter().map(|r| r.events() as usize).sum();
    let remotes = inputs.iter().map(|r| r.remotes() as usize).sum();
    let mut writer = RunWriter::new(dir, id, events, remotes)?;
    let newest_per_event = |group: &mut Vec<(usize, Vec<u8>)>| keep_newest(group, oldest);
    if !merge_section(
        inputs,
        Section::ByEvent,
        &mut writer,
        newest_per_event,
        stop,
    )? {
        return Ok(None);
    }
    writer.start_remote_section()?;
    let distinct = |group: &mut Vec<(usize, Vec<u8>)>| {
        let mut seen: Vec<Vec<u8>> = Vec::with_capacity(group.len());
        group.retain(|(_, payload)| {
            let new = !seen.contains(payload);
            if new {
                seen.push(payload.clone());
            }
            new
        });
        Ok(())
    };
    if !merge_section(inputs, Section::ByRemote, &mut writer, distinct, stop)? {
        return Ok(None);
    }
    writer.finish().map(Some)
}

/// Of by-event entries sharing a hash (input index, payload; newest input first), keeps
/// the newest per event, and drops deletions when `oldest`.
fn keep_newest(group: &mut Vec<(usize, Vec<u8>)>, oldest: bool) -> Result<(), StoreError> {
    let is_tombstone = |payload: &[u8]| payload.first() == Some(&0);
    if group.len() == 1 {
        if oldest && is_tombstone(&group[0].1) {
            group.clear();
        }
        return Ok(());
    }
    let mut seen = Vec::with_capacity(group.len());
    let mut kept = Vec::with_capacity(group.len());
    for (input, payload) in group.drain(..) {
        let (event, _) = read_event_payload(&payload)?;
        if seen.contains(&event) {
            continue;
        }
        seen.push(event);
        if !(oldest && is_tombstone(&payload)) {
            kept.push((input, payload));
        }
    }
    *group = kept;
    Ok(())
}

/// Streams one section of every input into `writer`, hash by hash, letting `keep` edit
/// each hash's group. False when stopped.
fn merge_section(
    inputs: &[Arc<Run>],
    section: Section,
    writer: &mut RunWriter,
    mut keep: impl FnMut(&mut Vec<(usize, Vec<u8>)>) -> Result<(), StoreError>,
    stop: &dyn Fn() -> bool,
) -> Result<bool, StoreError> {
    let mut streams: Vec<Peekable<SectionEntries>> = inputs
        .iter()
        .map(|run| SectionEntries::new(run.clone(), section).peekable())
        .collect();
    let mut group = Vec::new();
    for n in 0.. {
        if n % STOP_CHECK == 0 && stop() {
            return Ok(false);
        }
        let Some(hash) = lowest_head(&mut streams)? else {
            return Ok(true);
        };
        group.clear();
        for (input, stream) in streams.iter_mut().enumerate() {
            while let Some(Ok((h, _))) = stream.peek()
                && *h == hash
            {
                let (_, payload) = stream.next().expect("peeked")?;
                group.push((input, payload));
            }
        }
        keep(&mut group)?;
        for (_, payload) in &group {
            writer.push(hash, payload)?;
        }
    }
    unreachable!("the loop returns")
}

/// The lowest hash at the head of the streams; a stream's read error comes out here.
fn lowest_head(streams: &mut [Peekable<SectionEntries>]) -> Result<Option<u64>, StoreError> {
    let mut lowest = None;
    for stream in streams.iter_mut() {
        match stream.peek() {
            Some(Ok((hash, _))) => lowest = Some(lowest.map_or(*hash, |l: u64| l.min(*hash))),
            Some(Err(_)) => return Err(stream.next().expect("peeked").unwrap_err()),
            None => {}
        }
    }
    Ok(lowest)
}
