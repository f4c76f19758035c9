//! Typed access to the bridge's own values, so a bridge keeps its metadata as its own types
//! without owning a schema.

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};

use super::records::{from_value, to_value};
use super::{Store, StoreError};

/// Typed helpers over [`Store::value`] and [`Store::set_value`], for every store.
///
/// ```no_run
/// # async fn demo(store: &dyn bridgekit::Store) -> Result<(), bridgekit::StoreError> {
/// use bridgekit::store::StoreExt;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Cursor { last_seen: u64 }
/// store.put_typed("irc", "cursor", &Cursor { last_seen: 42 }).await?;
/// let cursor: Option<Cursor> = store.get_typed("irc", "cursor").await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StoreExt {
    /// The value under `namespace`/`key` as `T`.
    async fn get_typed<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError>;
    /// Stores `value` under `namespace`/`key`.
    async fn put_typed<T: Serialize + Sync>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError>;
}

#[async_trait]
impl<S: Store + ?Sized> StoreExt for S {
    async fn get_typed<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.value(namespace, key).await? {
            None => Ok(None),
            Some(value) => from_value(&value),
        }
    }

    async fn put_typed<T: Serialize + Sync>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let value = to_value(value)?;
        self.set_value(namespace, key, Some(&value)).await
    }
}
