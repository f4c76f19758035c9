//! The embedded store: everything bridgekit must remember across restarts, on sled.
//!
//! One sled database in one directory holds several trees, each with one job:
//! the inbox of acknowledged-but-unhandled homeserver events ([`inbox`]), the record of
//! processed transactions, the remote-ID ↔ event-ID mappings ([`messages`]) and the
//! ghosts' state ([`ghosts`]). Writes that must agree with each other go through one sled
//! transaction; writes the homeserver relies on are flushed before they are acknowledged.

mod flusher;
pub mod ghosts;
pub mod inbox;
pub mod messages;
pub(crate) mod outbox;

use std::path::{Path, PathBuf};

use sled::Tree;

pub use ghosts::{GhostRecord, Ghosts};
pub use messages::{MessageMapping, Messages};

/// Version of the on-disk layout written by this build. Bumped when a tree's encoding changes.
pub const SCHEMA_VERSION: u64 = 1;

/// Default sled page cache: sled's own default (1 GiB) is sized for a database server,
/// not for a sidecar next to a homeserver.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Everything that can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the store open.
    #[error(
        "the store at {path} is in use by another process (is another copy of this bridge running?); stop it or point store.path elsewhere"
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The store was written by a newer bridgekit.
    #[error(
        "the store at {path} has schema version {found}, newer than this build understands ({supported}); run the newer bridge version or restore a backup"
    )]
    TooNew {
        /// The store directory.
        path: PathBuf,
        /// Version found on disk.
        found: u64,
        /// Highest version this build understands.
        supported: u64,
    },
    /// A uniqueness rule would be broken (e.g. a remote ID already mapped to another event).
    #[error("store conflict: {0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt store entry in {tree}: {reason}")]
    Corrupt {
        /// The tree holding the entry.
        tree: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Writes could not be made durable (disk full, I/O error).
    #[error("could not write the store to disk: {0}")]
    Flush(String),
    /// The underlying database failed (I/O, disk full, …).
    #[error("store I/O error: {0}")]
    Backend(#[from] sled::Error),
}

/// The bridge's durable state. Cheap to clone: all clones share one database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    pub(crate) inbox: Tree,
    pub(crate) txns: Tree,
    pub(crate) txn_order: Tree,
    pub(crate) outbox: Tree,
    meta: Tree,
    flusher: flusher::Flusher,
    messages: Messages,
    ghosts: Ghosts,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `path`, with a page cache of `cache_bytes`.
    ///
    /// Fails with [`StoreError::Locked`] instead of waiting when another process has it open,
    /// and with [`StoreError::TooNew`] when a newer version wrote it.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Backend(e.into()))?;
        restrict_permissions(path);
        let db = open_waiting_for_lock(path, cache_bytes)?;
        let meta = db.open_tree("meta")?;
        check_schema(&meta, path)?;
        let store = Store {
            inbox: db.open_tree("inbox")?,
            txns: db.open_tree("txns")?,
            txn_order: db.open_tree("txn_order")?,
            outbox: db.open_tree("outbox")?,
            messages: Messages::open(&db)?,
            ghosts: Ghosts::open(&db)?,
            meta,
            flusher: flusher::Flusher::start(db.clone()),
            db,
        };
        Ok(store)
    }

    /// Message mappings: remote message ↔ Matrix event.
    pub fn messages(&self) -> &Messages {
        &self.messages
    }

    /// Ghost users: registration state and last profile set.
    pub fn ghosts(&self) -> &Ghosts {
        &self.ghosts
    }

    /// Forces everything written so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Like [`Store::flush`], without blocking the async runtime; concurrent callers share
    /// one flush.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.flusher.flush().await.map_err(StoreError::Flush)
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Counts this process start; used to make client transaction IDs unique across restarts.
    pub(crate) fn next_boot(&self) -> Result<u64, StoreError> {
        let next = self
            .meta
            .update_and_fetch("boot", |old| {
                let n = old.map(decode_u64).unwrap_or(0) + 1;
                Some(n.to_be_bytes().to_vec())
            })?
            .map(|v| decode_u64(&v))
            .unwrap_or(1);
        self.db.flush()?;
        Ok(next)
    }

    pub(crate) fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }
}

/// How long to wait for a lock held by a closing handle: sled lets go of its file lock only
/// when its background flusher ends, a moment after the last handle is dropped, and a bridge
/// restarted by a supervisor can arrive in that moment.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

fn open_waiting_for_lock(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
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
                        path: path.to_owned(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(other) => return Err(StoreError::Backend(other)),
        }
    }
}

fn check_schema(meta: &Tree, path: &Path) -> Result<(), StoreError> {
    match meta.get("schema_version")?.map(|v| decode_u64(&v)) {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
        // Version 1 is the first layout: nothing to upgrade yet. Upgrades go here, in order.
        Some(_) => Ok(()),
        None => {
            meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            Ok(())
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

pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_held_store_fails_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        // sled locks with flock, which is per open file description, so a second open in the
        // same process is refused just like one from another process.
        let err = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another process"));
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &99u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn boot_counter_increases_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path(), DEFAULT_CACHE_BYTES)
            .unwrap()
            .next_boot()
            .unwrap();
        let b = Store::open(dir.path(), DEFAULT_CACHE_BYTES)
            .unwrap()
            .next_boot()
            .unwrap();
        assert_eq!(b, a + 1);
    }
}
