//! The newest mappings, in memory: what the log holds that no run does yet. Bounded by
//! [`super::SEAL_AT`]; when full it is sealed into a run and a fresh one takes the writes.

use std::collections::HashMap;

use ruma::{EventId, OwnedEventId};

use super::super::entries::{self, push_entry};
use super::super::hashing::Hasher;
use super::super::json;
use super::{ReverseEntry, event_hash, remote_hash};
use crate::store::StoreError;
use crate::store::records::MessageMapping;

/// Mappings written since the last seal, both ways, kept encoded as the run will hold
/// them (about 250 bytes a mapping): lookups of recent mappings are rare on the hot path
/// (misses, mostly), so memory and the seal's work count more than decoding a hit.
#[derive(Clone, Default)]
pub(super) struct Memtable {
    /// Hash of the event ID → its by-event payload (the mapping's JSON, or a tombstone).
    events: HashMap<u64, Box<[u8]>>,
    /// Payloads of events whose hash another event here already has (almost never).
    collided: Vec<(u64, Box<[u8]>)>,
    /// Hash of room and remote ID → its by-remote payloads, as block entries.
    remotes: HashMap<u64, Vec<u8>>,
    /// The last log sequence applied.
    last_seq: u64,
}

impl Memtable {
    pub(super) fn len(&self) -> usize {
        self.events.len() + self.collided.len()
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies the logged operation `seq`: `payload` (what [`super::Op::encode`] made) about
    /// `event`, which `mapping` now maps (`None`: a deletion).
    pub(super) fn apply(
        &mut self,
        seq: u64,
        payload: Box<[u8]>,
        event: &EventId,
        mapping: Option<&MessageMapping>,
        hasher: &Hasher,
    ) -> Result<(), StoreError> {
        self.last_seq = seq;
        if let Some(mapping) = mapping {
            let reverse = ReverseEntry {
                part: mapping.part.as_str().to_owned(),
                event: mapping.event_id.clone(),
            }
            .encode();
            let under = remote_hash(hasher, mapping);
            let entries = self.remotes.entry(under).or_default();
            let known = entries::Entries::of_block(TREE, entries)
                .any(|e| matches!(e, Ok((_, p)) if p == reverse));
            if !known {
                push_entry(entries, under, &reverse);
            }
        }
        let hash = event_hash(hasher, event);
        match self.events.get_mut(&hash) {
            None => {
                self.events.insert(hash, payload);
            }
            Some(held) if read_event_payload(held)?.0 == event => *held = payload,
            Some(_) => {
                let mut same = None;
                for (h, held) in &mut self.collided {
                    if *h == hash && read_event_payload(held)?.0 == event {
                        same = Some(held);
                        break;
                    }
                }
                match same {
                    Some(held) => *held = payload,
                    None => self.collided.push((hash, payload)),
                }
            }
        }
        Ok(())
    }

    /// `Some(found)` when this memtable knows `event`, whose hash is `hash` (`found` is
    /// `None` for a deletion).
    pub(super) fn event(
        &self,
        event: &EventId,
        hash: u64,
    ) -> Result<Option<Option<MessageMapping>>, StoreError> {
        let held = self.events.get(&hash).into_iter();
        let collided = self
            .collided
            .iter()
            .filter(|(h, _)| *h == hash)
            .map(|(_, p)| p);
        for payload in held.chain(collided) {
            let (id, mapping) = read_event_payload(payload)?;
            if id == event {
                return Ok(Some(mapping));
            }
        }
        Ok(None)
    }

    /// Calls `each` with every by-remote payload written under `hash` (checked by the
    /// caller against the mapping).
    pub(super) fn remote(
        &self,
        hash: u64,
        mut each: impl FnMut(&[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(entries) = self.remotes.get(&hash) {
            for entry in entries::Entries::of_block(TREE, entries) {
                each(entry?.1)?;
            }
        }
        Ok(())
    }

    /// The live mappings, for export.
    pub(super) fn mappings(&self) -> Result<Vec<MessageMapping>, StoreError> {
        let payloads = self
            .events
            .values()
            .chain(self.collided.iter().map(|(_, p)| p));
        let mut out = Vec::new();
        for payload in payloads {
            if let (_, Some(mapping)) = read_event_payload(payload)? {
                out.push(mapping);
            }
        }
        Ok(out)
    }

    /// Its contents as run entries, each section sorted by hash: (by event, by remote).
    pub(super) fn entries(&self) -> Result<(Sorted<'_>, Sorted<'_>), StoreError> {
        let mut by_event: Vec<(u64, &[u8])> = self
            .events
            .iter()
            .map(|(&hash, payload)| (hash, &payload[..]))
            .chain(
                self.collided
                    .iter()
                    .map(|(hash, payload)| (*hash, &payload[..])),
            )
            .collect();
        by_event.sort_unstable();
        let mut by_remote = Vec::with_capacity(self.remotes.len());
        for entries in self.remotes.values() {
            for entry in entries::Entries::of_block(TREE, entries) {
                by_remote.push(entry?);
            }
        }
        by_remote.sort_unstable();
        Ok((by_event, by_remote))
    }
}

const TREE: &str = "msg_memtable";

/// One section's entries, sorted: (hash, payload).
pub(super) type Sorted<'a> = Vec<(u64, &'a [u8])>;

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
            let mapping: MessageMapping = json("mapping runs", payload)?;
            Ok((mapping.event_id.clone(), Some(mapping)))
        }
    }
}
