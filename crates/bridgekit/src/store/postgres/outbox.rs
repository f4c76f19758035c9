//! The outbox in PostgreSQL: sends the bridge asked for, removed once the homeserver has them.

use deadpool_postgres::GenericClient;

use super::{PostgresStore, corrupt, db, row, rows, run};
use crate::store::StoreError;
use crate::store::queues::OutboxEntry;
use crate::store::records::MessageMapping;

pub(super) async fn append_outbox(
    c: &impl GenericClient,
    entry: &OutboxEntry,
) -> Result<u64, StoreError> {
    let text = serde_json::to_string(entry).map_err(|e| corrupt("outbox", e))?;
    let row = row(
        c,
        "INSERT INTO outbox (entry) VALUES ($1) RETURNING seq",
        &[&text],
    )
    .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

impl PostgresStore {
    pub(super) async fn outbox_pending_pg(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let client = self.client().await?;
        let rows = rows(&client, "SELECT seq, entry FROM outbox ORDER BY seq", &[]).await?;
        rows.iter()
            .map(|row| {
                let entry: String = row.get(1);
                let entry = serde_json::from_str(&entry).map_err(|e| corrupt("outbox", e))?;
                Ok((row.get::<_, i64>(0) as u64, entry))
            })
            .collect()
    }

    pub(super) async fn outbox_complete_pg(
        &self,
        seq: u64,
        mapping: Option<&MessageMapping>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let stored = match mapping {
            Some(mapping) => super::messages::insert_message(&tx, mapping).await,
            None => Ok(()),
        };
        run(&tx, "DELETE FROM outbox WHERE seq = $1", &[&(seq as i64)]).await?;
        match stored {
            // The send is done whatever the mapping says; keeping it would repeat it forever.
            Ok(()) | Err(StoreError::Conflict(_)) => {
                tx.commit().await.map_err(db)?;
                stored
            }
            Err(other) => Err(other),
        }
    }
}
