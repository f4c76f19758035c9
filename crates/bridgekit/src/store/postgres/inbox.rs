//! The inbox in PostgreSQL, and the record of transactions already taken in: a transaction
//! is recorded and its items appended in one statement, a batch of them in one database
//! transaction.

use deadpool_postgres::GenericClient;

use super::{PostgresStore, corrupt, db, rows, run};
use crate::store::StoreError;
use crate::store::queues::{InboxItem, IncomingTransaction, ItemKind, Recorded};

fn item_from_row(row: &tokio_postgres::Row) -> Result<(u64, InboxItem), StoreError> {
    let code: i16 = row.get(1);
    let kind = u8::try_from(code)
        .ok()
        .and_then(ItemKind::from_code)
        .ok_or_else(|| corrupt("inbox", format!("unknown item kind {code}")))?;
    Ok((
        row.get::<_, i64>(0) as u64,
        InboxItem {
            kind,
            queue: row.get(2),
            json: row.get(3),
        },
    ))
}

/// Appends inbox items in order; returns their sequence numbers.
pub(super) async fn append_items(
    c: &impl GenericClient,
    items: &[InboxItem],
) -> Result<Vec<u64>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<i16> = items.iter().map(|i| i.kind as i16).collect();
    let queues: Vec<&str> = items.iter().map(|i| i.queue.as_str()).collect();
    let jsons: Vec<&str> = items.iter().map(|i| i.json.as_str()).collect();
    let rows = rows(c,
            "INSERT INTO inbox (kind, queue, json)
             SELECT k, q, j FROM unnest($1::smallint[], $2::text[], $3::text[]) WITH ORDINALITY AS t(k, q, j, n)
             ORDER BY n RETURNING seq",
            &[&kinds, &queues, &jsons],
        ).await?;
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
    // Sequence values are taken in insertion order, which follows `n`.
    seqs.sort_unstable();
    Ok(seqs)
}

pub(super) async fn record_key(c: &impl GenericClient, key: &[u8]) -> Result<bool, StoreError> {
    let inserted = run(
        c,
        "INSERT INTO txns (key) VALUES ($1) ON CONFLICT (key) DO NOTHING",
        &[&key],
    )
    .await?;
    Ok(inserted == 1)
}

/// Records one transaction and appends its items in one statement (one round trip):
/// nothing is appended when its key was recorded before.
async fn record_one(
    c: &impl GenericClient,
    txn: &IncomingTransaction,
) -> Result<Recorded, StoreError> {
    let kinds: Vec<i16> = txn.items.iter().map(|i| i.kind as i16).collect();
    let queues: Vec<&str> = txn.items.iter().map(|i| i.queue.as_str()).collect();
    let jsons: Vec<&str> = txn.items.iter().map(|i| i.json.as_str()).collect();
    let row = super::row(
        c,
        "WITH fresh AS (
             INSERT INTO txns (key) VALUES ($1) ON CONFLICT (key) DO NOTHING RETURNING seq
         ), items AS (
             INSERT INTO inbox (kind, queue, json)
             SELECT k, q, j FROM unnest($2::smallint[], $3::text[], $4::text[])
                 WITH ORDINALITY AS t(k, q, j, n)
             WHERE EXISTS (SELECT 1 FROM fresh)
             ORDER BY n RETURNING seq
         )
         SELECT (SELECT count(*) FROM fresh), ARRAY(SELECT seq FROM items ORDER BY seq)",
        &[&txn.key, &kinds, &queues, &jsons],
    )
    .await?;
    if row.get::<_, i64>(0) == 0 {
        return Ok(Recorded::Duplicate);
    }
    // Sequence values are taken in insertion order, which follows `n`.
    let seqs: Vec<i64> = row.get(1);
    Ok(Recorded::New(seqs.into_iter().map(|s| s as u64).collect()))
}

impl PostgresStore {
    /// One transaction (the usual case: the homeserver sends one at a time) is one statement,
    /// atomic on its own; several share one database transaction.
    pub(super) async fn record_transactions_pg(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut client = self.client().await?;
        if let [txn] = txns {
            return Ok(vec![record_one(&client, txn).await?]);
        }
        let tx = client.transaction().await.map_err(db)?;
        let mut outcomes = Vec::with_capacity(txns.len());
        for txn in txns {
            outcomes.push(record_one(&tx, txn).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(outcomes)
    }

    pub(super) async fn pending_items_pg(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        let client = self.client().await?;
        let rows = rows(
            &client,
            "SELECT seq, kind, queue, json FROM inbox ORDER BY seq",
            &[],
        )
        .await?;
        rows.iter().map(item_from_row).collect()
    }

    pub(super) async fn prune_pg(&self, keep: u64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        run(
            &client,
            "DELETE FROM txns WHERE seq <= (SELECT max(seq) FROM txns) - $1",
            &[&(keep as i64)],
        )
        .await
    }
}
