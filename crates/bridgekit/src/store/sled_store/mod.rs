//! The embedded backend: one sled database in one directory, one tree per kind of record.
//!
//! Writes that must agree go through one sled transaction, except on the hot path (message
//! mappings, the inbox), where write order does that job more cheaply; writes the homeserver relies on
//! (the inbox, the transaction record, the outbox) are flushed before they are acknowledged,
//! and concurrent flushes share one fsync (see the `flusher` module).

mod crypto_state;
mod depths;
mod entries;
mod export;
mod flusher;
mod ghosts;
mod hashing;
mod inbox;
mod journal;
#[cfg(test)]
mod journal_tests;
mod keys;
mod mappings;
mod outbox;
mod portals;
mod reactions;
mod remote_queue;
mod store_impl;
mod upgrade;
mod users;

use std::path::Path;

use sled::Tree;

use super::StoreError;

/// The sled backend. Cheap to clone: all clones share one database.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    flusher: flusher::Flusher,
    progress: inbox::SharedProgress,
    /// New transactions are durable here before sled flushes them (see `journal`).
    journal: std::sync::Arc<std::sync::Mutex<journal::Journal>>,
    messages: mappings::MessageTables,
    depths: depths::Depths,
    /// sled's log file (`<dir>/db`).
    log: std::sync::Arc<std::fs::File>,
    location: String,
}

/// Every tree, by job.
#[derive(Clone)]
struct Trees {
    meta: Tree,
    /// sequence → one inbox item (stores from before batches, and imports).
    inbox: Tree,
    /// batch number → a transaction's items.
    inbox_batches: Tree,
    /// batch number → bitmap of its handled items.
    inbox_done: Tree,
    txns: Tree,
    txn_order: Tree,
    outbox: Tree,
    /// sequence → a remote event not yet applied.
    remote_queue: Tree,
    /// (room, target, sender, key) → reaction JSON.
    reactions: Tree,
    /// event ID → reaction key.
    reaction_by_event: Tree,
    /// (remote ID, receiver) → portal JSON.
    portals: Tree,
    /// room ID → portal key.
    portal_by_room: Tree,
    /// user ID → ghost JSON.
    ghosts: Tree,
    /// remote ID → user ID.
    ghost_by_remote: Tree,
    /// (user, room) → empty.
    ghost_joined: Tree,
    /// (user, room) → profile JSON.
    ghost_room_profiles: Tree,
    /// (namespace, key) → JSON.
    values: Tree,
    /// user ID → user JSON.
    users: Tree,
    /// login ID → login JSON.
    logins: Tree,
    /// (user, login) → empty.
    logins_by_user: Tree,
    /// (chat, receiver, login) → portal login JSON.
    portal_logins: Tree,
    /// (login, chat, receiver) → empty.
    login_portals: Tree,
    /// key → one entry of the bot device's encryption state.
    crypto: Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            meta: db.open_tree("meta")?,
            inbox: db.open_tree("inbox")?,
            inbox_batches: db.open_tree("inbox_batches")?,
            inbox_done: db.open_tree("inbox_done")?,
            txns: db.open_tree("txns")?,
            txn_order: db.open_tree("txn_order")?,
            outbox: db.open_tree("outbox")?,
            remote_queue: db.open_tree("remote_queue")?,
            reactions: db.open_tree("reactions")?,
            reaction_by_event: db.open_tree("reaction_by_event")?,
            portals: db.open_tree("portals")?,
            portal_by_room: db.open_tree("portal_by_room")?,
            ghosts: db.open_tree("ghosts")?,
            ghost_by_remote: db.open_tree("ghost_by_remote")?,
            ghost_joined: db.open_tree("ghost_joined")?,
            ghost_room_profiles: db.open_tree("ghost_room_profiles")?,
            values: db.open_tree("values")?,
            users: db.open_tree("users")?,
            logins: db.open_tree("logins")?,
            logins_by_user: db.open_tree("logins_by_user")?,
            portal_logins: db.open_tree("portal_logins")?,
            login_portals: db.open_tree("login_portals")?,
            crypto: db.open_tree("crypto")?,
        })
    }

    /// The trees holding records (all but `meta` and the message tables), for emptiness
    /// checks.
    fn records(&self) -> [&Tree; 22] {
        [
            &self.inbox,
            &self.inbox_batches,
            &self.inbox_done,
            &self.txns,
            &self.txn_order,
            &self.outbox,
            &self.remote_queue,
            &self.reactions,
            &self.reaction_by_event,
            &self.portals,
            &self.portal_by_room,
            &self.ghosts,
            &self.ghost_by_remote,
            &self.ghost_joined,
            &self.ghost_room_profiles,
            &self.values,
            &self.users,
            &self.logins,
            &self.logins_by_user,
            &self.portal_logins,
            &self.login_portals,
            &self.crypto,
        ]
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `path`, with a page cache of `cache_bytes`.
    ///
    /// Fails with [`StoreError::Locked`] instead of waiting when another process has it
    /// open, and with [`StoreError::TooNew`] when a newer version wrote it. An older layout
    /// is upgraded in place.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Io(e.to_string()))?;
        restrict_permissions(path);
        let location = path.display().to_string();
        let db = open_waiting_for_lock(path, cache_bytes, &location)?;
        let trees = Trees::open(&db)?;
        let hasher = hashing::Hasher::of_store(&trees.meta)?;
        let messages = mappings::MessageTables::open(
            &db,
            &trees.meta,
            hasher,
            &path.join(RUNS_DIR),
            mappings::directory_budget(cache_bytes),
        )?;
        // sled's log file, synced after each flush (see the `flusher` module).
        let log = std::sync::Arc::new(
            std::fs::File::open(path.join("db")).map_err(|e| StoreError::Io(e.to_string()))?,
        );
        upgrade::to_current(&db, &trees, &messages, &location)?;
        let (journal, journaled) =
            journal::Journal::open(&path.join(JOURNAL_FILE)).map_err(|e| {
                StoreError::Io(format!("cannot open the intake journal in {location}: {e}"))
            })?;
        let store = SledStore {
            flusher: flusher::Flusher::start(db.clone(), log.clone()),
            log,
            progress: Default::default(),
            journal: std::sync::Arc::new(std::sync::Mutex::new(journal)),
            depths: depths::Depths::count(&trees),
            messages,
            db,
            trees,
            location,
        };
        let recovered = store.replay_journal(journaled)?;
        if recovered > 0 {
            tracing::info!(recovered, "transactions taken back from the intake journal");
        }
        Ok(store)
    }

    /// Forces everything written so far to disk, blocking.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.write_progress_now()?;
        self.db.flush()?;
        self.log
            .sync_data()
            .map_err(|e| StoreError::Flush(e.to_string()))?;
        Ok(())
    }

    /// Waits (blocking, up to `timeout`) until the store's background work is done: full
    /// memtables of message mappings sealed and due merges finished. True when it is. For
    /// benchmarks and tests that measure a settled store; a running bridge never needs it.
    pub fn wait_for_background_work(&self, timeout: std::time::Duration) -> bool {
        self.messages.wait_until_idle(timeout)
    }

    /// Bytes the store takes on disk: sled's files and the mapping runs.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.messages.files_size()
    }

    async fn flush_async(&self) -> Result<(), StoreError> {
        self.write_progress_now()?;
        self.flusher.flush().await.map_err(StoreError::Flush)
    }
}

/// The intake journal's file, inside the store's directory.
const JOURNAL_FILE: &str = "inbox.journal";

/// The directory of message mapping runs, inside the store's directory.
const RUNS_DIR: &str = "mapping-runs";

/// How long to wait for a lock held by a closing handle: sled lets go of its file lock only
/// when its background flusher ends, a moment after the last handle is dropped, and a bridge
/// restarted by a supervisor can arrive in that moment.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

fn open_waiting_for_lock(
    path: &Path,
    cache_bytes: u64,
    location: &str,
) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(ref io)) if io.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked {
                        location: location.to_owned(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// The store holds tokens' effects and users' messages: keep it private to the bridge's user.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    }
}

fn corrupt(tree: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree,
        reason: reason.to_string(),
    }
}

fn json<T: serde::de::DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, e))
}

fn to_json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records serialize")
}

/// Turns a sled transaction outcome into ours; aborts carry a conflict message.
fn tx_result<T>(
    result: Result<T, sled::transaction::TransactionError<String>>,
) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        sled::transaction::TransactionError::Abort(msg) => StoreError::Conflict(msg),
        sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_CACHE_BYTES;

    #[test]
    fn second_open_of_a_held_store_fails_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        // sled locks with flock, which is per open file description, so a second open in the
        // same process is refused just like one from another process.
        let err = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another process"));
    }

    #[test]
    fn the_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let _store = SledStore::open(&path, DEFAULT_CACHE_BYTES).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
}
