//! The bot device's encryption state in its own tree, each change one atomic batch.

use async_trait::async_trait;

use super::SledStore;
use crate::store::{CryptoState, StoreError};

#[async_trait]
impl CryptoState for SledStore {
    async fn crypto_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.trees
            .crypto
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                let k = String::from_utf8(k.to_vec()).map_err(|e| super::corrupt("crypto", e))?;
                Ok((k, v.to_vec()))
            })
            .collect()
    }

    async fn apply_crypto(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in puts {
            batch.insert(k.as_bytes(), v.as_slice());
        }
        for k in deletes {
            batch.remove(k.as_bytes());
        }
        self.trees.crypto.apply_batch(batch)?;
        self.flush_async().await
    }
}
