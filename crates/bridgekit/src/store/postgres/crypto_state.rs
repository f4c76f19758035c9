//! The bot device's encryption state in `crypto_state`, each change one transaction.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::{PostgresStore, db, run};
use crate::store::{CryptoState, StoreError};

pub(super) async fn put(c: &impl GenericClient, key: &str, value: &[u8]) -> Result<(), StoreError> {
    run(
        c,
        "INSERT INTO crypto_state (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&key, &value],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl CryptoState for PostgresStore {
    async fn crypto_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT key, value FROM crypto_state", &[])
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn apply_crypto(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        for (k, v) in puts {
            put(&tx, k, v).await?;
        }
        for k in deletes {
            run(&tx, "DELETE FROM crypto_state WHERE key = $1", &[k]).await?;
        }
        tx.commit().await.map_err(db)
    }
}
