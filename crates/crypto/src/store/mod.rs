//! The machine's crypto store: matrix-sdk-crypto's [`MemoryStore`] for reads, with every write
//! first saved to the bridge's own store through [`KeyValue`], as one atomic batch.
//!
//! The bridge's store (sled or PostgreSQL) stays the one place its state lives: it is backed up,
//! carried by `migrate-store` and survives a SIGKILL like the rest. At start the image is read
//! back whole. A write that cannot be saved fails before memory changes, so memory never runs
//! ahead of what a restart would find (a Megolm index that was used is never handed out again).
//!
//! A bridge's bot has no key backup, secret storage, dehydrated device or room-key bundles:
//! those parts of a change are kept in memory only.

use std::sync::Arc;

use matrix_sdk_crypto::olm::InboundGroupSession;
use matrix_sdk_crypto::store::{CryptoStoreError, MemoryStore};

use crate::pickle::PickleKey;

mod crypto_store;
mod kv;
mod load;

pub use kv::{Batch, BoxError, KeyValue};

/// The separator inside keys: it occurs in no Matrix ID or key.
const SEP: char = '\u{1f}';

fn key(kind: &str, parts: &[&str]) -> String {
    let mut out = kind.to_owned();
    for part in parts {
        out.push(SEP);
        out.push_str(part);
    }
    out
}

#[derive(Debug, thiserror::Error)]
enum StoreFailure {
    #[error("the bridge's store refused the crypto state: {0}")]
    Backend(BoxError),
    #[error("crypto state entry {key:?} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The memory store cannot fail.
fn never(e: std::convert::Infallible) -> CryptoStoreError {
    match e {}
}

fn backend(error: BoxError) -> CryptoStoreError {
    CryptoStoreError::backend(StoreFailure::Backend(error))
}

fn corrupt(key: &str, reason: impl ToString) -> CryptoStoreError {
    CryptoStoreError::backend(StoreFailure::Corrupt {
        key: key.to_owned(),
        reason: reason.to_string(),
    })
}

/// The crypto store of one machine.
#[derive(Debug)]
pub(crate) struct PersistentStore {
    memory: MemoryStore,
    kv: Arc<dyn KeyValue>,
    pickle_key: Option<PickleKey>,
    /// Serializes writes, so batches reach the backend in the order memory sees them.
    write_lock: tokio::sync::Mutex<()>,
}

impl PersistentStore {
    /// Reads the saved image back into memory.
    pub(crate) async fn open(
        kv: Arc<dyn KeyValue>,
        pickle_key: Option<PickleKey>,
    ) -> Result<Self, CryptoStoreError> {
        let store = Self {
            memory: MemoryStore::new(),
            kv,
            pickle_key,
            write_lock: tokio::sync::Mutex::new(()),
        };
        store.load().await?;
        Ok(store)
    }

    fn seal<T: serde::Serialize>(&self, value: &T) -> Vec<u8> {
        let json = serde_json::to_vec(value).expect("crypto state serializes to JSON");
        match &self.pickle_key {
            Some(k) => k.encrypt(&json),
            None => json,
        }
    }

    fn open_value<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, CryptoStoreError> {
        let plain;
        let json = match &self.pickle_key {
            Some(k) => {
                plain = k.decrypt(bytes).map_err(|reason| corrupt(key, reason))?;
                &plain[..]
            }
            None => bytes,
        };
        serde_json::from_slice(json).map_err(|e| {
            if self.pickle_key.is_none()
                && serde_json::from_slice::<serde_json::Value>(bytes).is_err()
            {
                corrupt(
                    key,
                    "not JSON: was it written with encryption.pickle_key set?",
                )
            } else {
                corrupt(key, e)
            }
        })
    }

    async fn write(&self, batch: Batch) -> Result<(), CryptoStoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.kv.apply(batch).await.map_err(backend)
    }

    async fn inbound_puts(&self, sessions: &[InboundGroupSession], batch: &mut Batch) {
        for s in sessions {
            let pickle = s.pickle().await;
            batch.puts.push((
                key("inbound", &[s.room_id().as_str(), s.session_id()]),
                self.seal(&pickle),
            ));
        }
    }
}
