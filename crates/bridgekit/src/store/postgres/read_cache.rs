//! Answers for the reads every bridged message makes (the ghost's record, by user and by
//! remote user, whether it joined the room, the room's portal), kept in memory in front of PostgreSQL.
//!
//! Coherent because this process is the schema's only writer while it holds the schema's
//! lock (a standby starts with an empty cache when it takes over), and every write to these
//! tables goes through the store: an entry is dropped before its write and set after the
//! write succeeded, so a failed write leaves nothing stale. Bounded: a map that reaches
//! [`CAPACITY`] entries starts over empty, which costs a few reads and no memory growth.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use ruma::{OwnedRoomId, OwnedUserId};

use crate::ids::RemoteUserId;
use crate::store::{GhostRecord, Portal, PortalKey, StoreError};

/// Most entries in each map.
const CAPACITY: usize = 4096;

/// One bounded map. Its generation counts writes, so that a read which raced a write does
/// not put back what the write replaced.
pub(super) struct Bounded<K, V>(Mutex<Inner<K, V>>);

struct Inner<K, V> {
    map: HashMap<K, V>,
    generation: u64,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    fn new() -> Self {
        Self(Mutex::new(Inner {
            map: HashMap::new(),
            generation: 0,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, or the stamp to hand to [`Self::fill`] after reading the database.
    pub(super) fn get(&self, key: &K) -> Result<V, u64> {
        let inner = self.lock();
        inner.map.get(key).cloned().ok_or(inner.generation)
    }

    /// Caches what a read found, unless a write happened since `stamp`.
    pub(super) fn fill(&self, key: K, value: V, stamp: u64) {
        let mut inner = self.lock();
        if inner.generation == stamp {
            Self::insert(&mut inner, key, value);
        }
    }

    /// The cached value, or what `load` reads from the database (then cached, unless a
    /// write happened meanwhile).
    pub(super) async fn get_or_load<F>(&self, key: K, load: F) -> Result<V, StoreError>
    where
        F: std::future::Future<Output = Result<V, StoreError>>,
    {
        let stamp = match self.get(&key) {
            Ok(known) => return Ok(known),
            Err(stamp) => stamp,
        };
        let value = load.await?;
        self.fill(key, value.clone(), stamp);
        Ok(value)
    }

    /// Caches what a write stored.
    pub(super) fn set(&self, key: K, value: V) {
        let mut inner = self.lock();
        inner.generation += 1;
        Self::insert(&mut inner, key, value);
    }

    fn insert(inner: &mut Inner<K, V>, key: K, value: V) {
        if inner.map.len() >= CAPACITY && !inner.map.contains_key(&key) {
            inner.map.clear();
        }
        inner.map.insert(key, value);
    }

    /// Before a write of `key`.
    pub(super) fn forget(&self, key: &K) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.remove(key);
    }

    /// Before a write that may touch any entry.
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.clear();
    }
}

/// The cached reads.
pub(super) struct ReadCache {
    pub(super) ghosts: Bounded<OwnedUserId, GhostRecord>,
    /// Ghosts by remote user, `None` for one known to have none. Any ghost write starts it
    /// over (a write may move a remote ID).
    pub(super) by_remote: Bounded<RemoteUserId, Option<(OwnedUserId, GhostRecord)>>,
    pub(super) joined: Bounded<(OwnedUserId, OwnedRoomId), bool>,
    /// Portals by key, `None` for a key known to have none.
    pub(super) portals: Bounded<PortalKey, Option<Portal>>,
    /// Which portal a room belongs to, `None` for a room known to have none.
    pub(super) rooms: Bounded<OwnedRoomId, Option<Portal>>,
}

impl ReadCache {
    pub(super) fn new() -> Self {
        Self {
            ghosts: Bounded::new(),
            by_remote: Bounded::new(),
            joined: Bounded::new(),
            portals: Bounded::new(),
            rooms: Bounded::new(),
        }
    }

    /// Before a portal changes: its key and room may both move, so both maps start over.
    pub(super) fn forget_portals(&self) {
        self.portals.clear();
        self.rooms.clear();
    }

    /// Before records are written in bulk (import).
    pub(super) fn clear(&self) {
        self.ghosts.clear();
        self.by_remote.clear();
        self.joined.clear();
        self.forget_portals();
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn a_read_that_raced_a_write_does_not_put_back_the_old_value() {
        let map = Bounded::<u32, &str>::new();
        let stamp = map.get(&1).unwrap_err(); // a reader misses and goes to the database
        map.forget(&1); // a writer starts…
        map.set(1, "new"); // …and finishes
        map.fill(1, "old", stamp); // the reader comes back with what it read before
        assert_eq!(map.get(&1), Ok("new"));
    }

    #[test]
    fn a_failed_write_leaves_no_entry_and_a_full_map_starts_over() {
        let map = Bounded::<usize, usize>::new();
        let stamp = map.get(&7).unwrap_err();
        map.fill(7, 70, stamp);
        map.forget(&7); // the write that follows fails: nothing is set
        assert!(map.get(&7).is_err());
        for i in 0..super::CAPACITY + 10 {
            map.set(i, i);
        }
        assert!(map.lock().map.len() <= super::CAPACITY);
        assert_eq!(map.get(&(super::CAPACITY + 9)), Ok(super::CAPACITY + 9));
    }
}
