//! Where the crypto state goes: the bridge's store, seen as string keys and byte values.

use async_trait::async_trait;

/// The error type of a [`KeyValue`] backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes applied together or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    /// Keys to set, with their values.
    pub puts: Vec<(String, Vec<u8>)>,
    /// Keys to remove.
    pub deletes: Vec<String>,
}

impl Batch {
    /// True when the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// Where the crypto state is kept: the bridge's store, seen as string keys and byte values.
#[async_trait]
pub trait KeyValue: Send + Sync + std::fmt::Debug {
    /// Every key and value, for the start.
    async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, BoxError>;
    /// Applies `batch` atomically and durably (flushed before it returns).
    async fn apply(&self, batch: Batch) -> Result<(), BoxError>;
}
