//! Remote message part ↔ Matrix event mappings, unique in both directions, in two packed
//! tables (see the `packed` module: memory grows with keys, so many mappings share one).
//!
//! - by event: hash(event ID) → the mapping (JSON).
//! - by remote: hash(room, remote ID) → `[part, event ID]`, so all parts of a message are
//!   in one bucket. Entries are checked against the mapping they name, so a hash collision
//!   or a stale entry never answers for another message.
//!
//! Not a sled transaction: each sled transaction rolls the log buffer twice (two disk writes),
//! which made mapping inserts the most expensive part of the hot path. Instead, writers of
//! mappings take one lock (the store belongs to one process), and the two tables are written
//! in an order that a crash can only leave harmless: the reverse entry first, the mapping
//! last, and the reverse way on delete. A reverse entry whose mapping does not point back is
//! stale; reads ignore it and writes replace it.

use std::sync::{Arc, Mutex};

use ruma::{EventId, RoomId};

use super::keys::{key, parts};
use super::packed::{Hasher, Packed};
use super::{corrupt, json, to_json};
use crate::store::StoreError;
use crate::store::records::MessageMapping;

/// The two tables and the lock their writers take.
#[derive(Clone)]
pub(super) struct MessageTables {
    by_event: Packed,
    by_remote: Packed,
    hasher: Hasher,
    writer: Arc<Mutex<()>>,
}

const BY_EVENT: &str = "msg_packed_by_event";
const BY_REMOTE: &str = "msg_packed_by_remote";

fn decode(bytes: &[u8]) -> Result<MessageMapping, StoreError> {
    json(BY_EVENT, bytes)
}

fn is_for(mapping: &MessageMapping, room_id: &RoomId, remote_id: &str, part: &str) -> bool {
    mapping.room_id == room_id && mapping.remote_id == remote_id && mapping.part == part
}

/// A by-remote entry: (part, event ID).
fn reverse_entry(part: &str, event_id: &str) -> Vec<u8> {
    key(&[part, event_id])
}

fn parse_reverse(bytes: &[u8]) -> Result<(String, ruma::OwnedEventId), StoreError> {
    match parts(bytes).as_deref() {
        Some([part, event]) => Ok((
            part.clone(),
            EventId::parse(event).map_err(|e| corrupt(BY_REMOTE, e))?,
        )),
        _ => Err(corrupt(BY_REMOTE, "malformed entry")),
    }
}

impl MessageTables {
    /// The tables of `db`, hashing under the store's key.
    pub(super) fn open(db: &sled::Db, hasher: Hasher) -> Result<Self, StoreError> {
        Ok(Self {
            by_event: Packed::new(db.open_tree(BY_EVENT)?, BY_EVENT),
            by_remote: Packed::new(db.open_tree(BY_REMOTE)?, BY_REMOTE),
            hasher,
            writer: Default::default(),
        })
    }

    /// The sled trees, for emptiness checks.
    pub(super) fn trees(&self) -> [&sled::Tree; 2] {
        [self.by_event.tree(), self.by_remote.tree()]
    }

    fn event_hash(&self, event_id: &str) -> u64 {
        self.hasher.hash(&[event_id.as_bytes()])
    }

    fn remote_hash(&self, room_id: &str, remote_id: &str) -> u64 {
        self.hasher
            .hash(&[room_id.as_bytes(), remote_id.as_bytes()])
    }

    /// Inserts `mapping`; [`StoreError::Conflict`] (changing nothing) when either side is
    /// mapped to something else. Inserting the same mapping again is a no-op.
    pub(super) fn insert(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (room, remote, part) = (
            &mapping.room_id,
            mapping.remote_id.as_str(),
            mapping.part.as_str(),
        );
        let event = mapping.event_id.as_str();
        let remote_hash = self.remote_hash(room.as_str(), remote);
        // Claim the reverse entry: usually free; taken by this same event (a repeat); or
        // left by a crash, naming a mapping that is not its own.
        let claimed = self.by_remote.edit(remote_hash, |entries| {
            let mut repeat = false;
            let mut kept = Vec::with_capacity(entries.len() + 1);
            for entry in entries.drain(..) {
                let (entry_part, entry_event) = parse_reverse(&entry)?;
                if entry_part != part {
                    kept.push(entry);
                    continue;
                }
                if entry_event == event {
                    repeat = true;
                    kept.push(entry);
                    continue;
                }
                match self.by_event(&entry_event)? {
                    Some(other) if is_for(&other, room, remote, part) => {
                        return Err(StoreError::Conflict(format!(
                            "remote message {remote} (part {part:?}) in {room} is already mapped to {entry_event}"
                        )));
                    }
                    // Another message whose hash is the same: its entry stays.
                    Some(other)
                        if other.part == part
                            && self.remote_hash(other.room_id.as_str(), other.remote_id.as_str())
                                == remote_hash =>
                    {
                        kept.push(entry)
                    }
                    _ => {} // stale: dropped
                }
            }
            if !repeat {
                kept.push(reverse_entry(part, event));
            }
            *entries = kept;
            Ok(!repeat)
        })?;
        let value = to_json(mapping);
        let inserted = self.by_event.edit(self.event_hash(event), |entries| {
            for entry in entries.iter() {
                if decode(entry)?.event_id == event {
                    return Ok(*entry == value);
                }
            }
            entries.push(value.clone());
            Ok(true)
        })?;
        if inserted {
            return Ok(());
        }
        if claimed {
            // Undo: the event belongs to another remote message.
            self.by_remote.edit(remote_hash, |entries| {
                let ours = reverse_entry(part, event);
                entries.retain(|e| *e != ours);
                Ok(())
            })?;
        }
        Err(StoreError::Conflict(format!(
            "event {event} is already mapped to another remote message"
        )))
    }

    pub(super) fn by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        self.by_event
            .find(self.event_hash(event_id.as_str()), |entry| {
                let mapping = decode(entry)?;
                Ok((mapping.event_id == event_id).then_some(mapping))
            })
    }

    pub(super) fn by_remote(
        &self,
        room_id: &RoomId,
        remote_id: &str,
        part: &str,
    ) -> Result<Option<MessageMapping>, StoreError> {
        let events =
            self.by_remote
                .find_all(self.remote_hash(room_id.as_str(), remote_id), |entry| {
                    let (entry_part, event) = parse_reverse(entry)?;
                    Ok((entry_part == part).then_some(event))
                })?;
        for event in events {
            if let Some(mapping) = self.by_event(&event)?
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
        let events = self
            .by_remote
            .find_all(self.remote_hash(room_id.as_str(), remote_id), |entry| {
                Ok(Some(parse_reverse(entry)?))
            })?;
        let mut out = Vec::new();
        for (part, event) in events {
            if let Some(mapping) = self.by_event(&event)?
                && is_for(&mapping, room_id, remote_id, &part)
            {
                out.push(mapping);
            }
        }
        out.sort_by(|a, b| a.part.as_str().cmp(b.part.as_str()));
        Ok(out)
    }

    pub(super) fn delete(&self, event_id: &EventId) -> Result<Option<MessageMapping>, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let removed = self
            .by_event
            .edit(self.event_hash(event_id.as_str()), |entries| {
                let mut removed = None;
                let mut kept = Vec::with_capacity(entries.len());
                for entry in entries.drain(..) {
                    let mapping = decode(&entry)?;
                    if mapping.event_id == event_id {
                        removed = Some(mapping);
                    } else {
                        kept.push(entry);
                    }
                }
                *entries = kept;
                Ok(removed)
            })?;
        let Some(mapping) = removed else {
            return Ok(None);
        };
        let ours = reverse_entry(mapping.part.as_str(), event_id.as_str());
        self.by_remote.edit(
            self.remote_hash(mapping.room_id.as_str(), mapping.remote_id.as_str()),
            |entries| {
                entries.retain(|e| *e != ours);
                Ok(())
            },
        )?;
        Ok(Some(mapping))
    }

    /// Every mapping, a page of buckets at a time (for export): the mappings and where to go
    /// on from, `None` at the end.
    pub(super) fn page(
        &self,
        after: Option<&sled::IVec>,
        buckets: usize,
    ) -> Result<(Vec<MessageMapping>, Option<sled::IVec>), StoreError> {
        let (entries, last) = self.by_event.page(after, buckets)?;
        let mappings = entries
            .iter()
            .map(|e| decode(e))
            .collect::<Result<_, _>>()?;
        Ok((mappings, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DEFAULT_CACHE_BYTES, SledStore};
    use ruma::{event_id, room_id};

    #[test]
    fn a_reverse_entry_left_by_a_crash_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let tables = &store.messages;
        let room = room_id!("!r:example.org");
        // What a crash between the two writes of an insert leaves: the reverse entry only.
        tables
            .by_remote
            .edit(tables.remote_hash(room.as_str(), "r1"), |e| {
                e.push(reverse_entry("", "$e1"));
                Ok(())
            })
            .unwrap();
        assert_eq!(tables.by_remote(room, "r1", "").unwrap(), None);

        // The event goes to another remote message: r1's stale entry must not resolve to it.
        let r2 = MessageMapping::new(
            room.to_owned(),
            crate::ids::MessageId::from_static("r2"),
            event_id!("$e1").to_owned(),
        );
        tables.insert(&r2).unwrap();
        assert_eq!(tables.by_remote(room, "r1", "").unwrap(), None);
        assert!(tables.parts(room, "r1").unwrap().is_empty());
        assert_eq!(tables.by_remote(room, "r2", "").unwrap(), Some(r2));

        // And r1 can be mapped afresh.
        let r1 = MessageMapping::new(
            room.to_owned(),
            crate::ids::MessageId::from_static("r1"),
            event_id!("$e9").to_owned(),
        );
        tables.insert(&r1).unwrap();
        assert_eq!(tables.by_remote(room, "r1", "").unwrap(), Some(r1));
    }

    #[test]
    fn many_mappings_share_few_sled_keys_and_all_resolve_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let tables = &store.messages;
        let room = room_id!("!r:example.org");
        let n = 3_000;
        for i in 0..n {
            let event = EventId::parse(format!("$event{i}")).unwrap();
            let m = MessageMapping::new(
                room.to_owned(),
                crate::ids::MessageId::new(format!("remote{i}")).unwrap(),
                event,
            );
            tables.insert(&m).unwrap();
        }
        for i in (0..n).step_by(7) {
            let event = EventId::parse(format!("$event{i}")).unwrap();
            let by_event = tables.by_event(&event).unwrap().unwrap();
            assert_eq!(by_event.remote_id.as_str(), format!("remote{i}"));
            let by_remote = tables.by_remote(room, &format!("remote{i}"), "").unwrap();
            assert_eq!(by_remote.unwrap().event_id, event);
        }
        let keys: usize = tables.trees().iter().map(|t| t.len()).sum();
        assert!(keys * 8 <= 2 * n, "{keys} sled keys for {n} mappings");
    }
}
