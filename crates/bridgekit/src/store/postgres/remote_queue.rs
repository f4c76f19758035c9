//! The remote queue in PostgreSQL: events a bridge handed over from its network, removed once
//! applied.

use deadpool_postgres::GenericClient;

use super::{PostgresStore, corrupt, row, rows};
use crate::store::StoreError;
use crate::store::queues::RemoteItem;

pub(super) async fn append_remote(
    c: &impl GenericClient,
    item: &RemoteItem,
) -> Result<u64, StoreError> {
    let text = serde_json::to_string(item).map_err(|e| corrupt("remote_queue", e))?;
    let row = row(
        c,
        "INSERT INTO remote_queue (item) VALUES ($1) RETURNING seq",
        &[&text],
    )
    .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

impl PostgresStore {
    pub(super) async fn remote_pending_pg(&self) -> Result<Vec<(u64, RemoteItem)>, StoreError> {
        let client = self.client().await?;
        let rows = rows(
            &client,
            "SELECT seq, item FROM remote_queue ORDER BY seq",
            &[],
        )
        .await?;
        rows.iter()
            .map(|row| {
                let item: String = row.get(1);
                let item = serde_json::from_str(&item).map_err(|e| corrupt("remote_queue", e))?;
                Ok((row.get::<_, i64>(0) as u64, item))
            })
            .collect()
    }
}
