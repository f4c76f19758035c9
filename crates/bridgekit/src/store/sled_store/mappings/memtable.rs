//! The newest mappings, in memory: what the log holds that no run does yet. Bounded by
//! [`super::SEAL_AT`]; when full it is sealed into a run and a fresh one takes the writes.

use std::collections::HashMap;

use ruma::{EventId, OwnedEventId};

use super::super::hashing::Hasher;
use super::super::{json, to_json};
use super::{Op, ReverseEntry, event_hash, remote_hash};
use crate::store::StoreError;
use crate::store::records::MessageMapping;

/// Mappings written since the last seal, both ways.
#[derive(Clone, Default)]
pub(super) struct Memtable {
    /// Event → its mapping, or `None` where it was deleted.
    events: HashMap<OwnedEventId, Option<MessageMapping>>,
    /// Hash of room and remote ID → the parts written under it.
    remotes: HashMap<u64, Vec<ReverseEntry>>,
    /// The last log sequence applied.
    last_seq: u64,
}

impl Memtable {
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies the logged operation `seq`.
    pub(super) fn apply(&mut self, seq: u64, op: Op, hasher: &Hasher) {
        self.last_seq = seq;
        match op {
            Op::Put(mapping) => {
                let reverse = ReverseEntry {
                    part: mapping.part.as_str().to_owned(),
                    event: mapping.event_id.clone(),
                };
                let under = remote_hash(hasher, &mapping);
                let entries = self.remotes.entry(under).or_default();
                if !entries.contains(&reverse) {
                    entries.push(reverse);
                }
                self.events.insert(mapping.event_id.clone(), Some(mapping));
            }
            Op::Delete(event) => {
                self.events.insert(event, None);
            }
        }
    }

    /// `Some(found)` when this memtable knows `event` (`found` is `None` for a deletion).
    pub(super) fn event(&self, event: &EventId) -> Option<Option<&MessageMapping>> {
        self.events.get(event).map(Option::as_ref)
    }

    /// Every part written under `hash` (checked by the caller against the mapping).
    pub(super) fn remote(&self, hash: u64) -> &[ReverseEntry] {
        self.remotes.get(&hash).map_or(&[], Vec::as_slice)
    }

    /// The live mappings, for export.
    pub(super) fn mappings(&self) -> impl Iterator<Item = &MessageMapping> {
        self.events.values().flatten()
    }

    /// Its contents as run entries, each section sorted by hash: (by event, by remote).
    pub(super) fn entries(&self, hasher: &Hasher) -> (Vec<(u64, Vec<u8>)>, Vec<(u64, Vec<u8>)>) {
        let mut by_event: Vec<_> = self
            .events
            .iter()
            .map(|(event, mapping)| {
                let payload = match mapping {
                    Some(mapping) => to_json(mapping),
                    None => tombstone(event),
                };
                (event_hash(hasher, event), payload)
            })
            .collect();
        by_event.sort_unstable();
        let mut by_remote: Vec<_> = self
            .remotes
            .iter()
            .flat_map(|(&hash, entries)| entries.iter().map(move |e| (hash, e.encode())))
            .collect();
        by_remote.sort_unstable();
        (by_event, by_remote)
    }
}

/// A by-event payload saying the event's mapping was deleted: a zero byte (no JSON starts
/// with one), then the event ID.
pub(super) fn tombstone(event: &EventId) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + event.as_str().len());
    payload.push(0);
    payload.extend_from_slice(event.as_str().as_bytes());
    payload
}

/// A by-event payload, read: the event it is about and its mapping (`None`: deleted).
pub(super) fn read_event_payload(
    payload: &[u8],
) -> Result<(OwnedEventId, Option<MessageMapping>), StoreError> {
    match payload.split_first() {
        Some((0, event)) => {
            let event = std::str::from_utf8(event)
                .ok()
                .and_then(|e| EventId::parse(e).ok())
                .ok_or_else(|| super::corrupt_run("a malformed tombstone"))?;
            Ok((event, None))
        }
        _ => {
            let mapping: MessageMapping = json("msg_runs", payload)?;
            Ok((mapping.event_id.clone(), Some(mapping)))
        }
    }
}
