//! Reaction mappings in PostgreSQL. Uniqueness in both directions is the table's own
//! (primary key plus a unique event ID); an insert that hits either is checked against the
//! row it hit, so repeating the same mapping is a no-op.

use deadpool_postgres::GenericClient;
use ruma::{EventId, RoomId, UserId};
use tokio_postgres::Row;

use super::{parse, rows, run};
use crate::store::StoreError;
use crate::store::records::ReactionMapping;

const REACTION_COLUMNS: &str = "room_id, target_remote_id, sender, key, event_id, remote_id";

pub(super) fn reaction_from_row(row: &Row) -> Result<ReactionMapping, StoreError> {
    let t = "reactions";
    Ok(ReactionMapping {
        room_id: parse(t, row.get(0), |s| RoomId::parse(s))?,
        target_remote_id: row.get(1),
        sender: parse(t, row.get(2), |s| UserId::parse(s))?,
        key: row.get(3),
        event_id: parse(t, row.get(4), |s| EventId::parse(s))?,
        remote_id: row.get(5),
    })
}

pub(super) async fn insert_reaction(
    c: &impl GenericClient,
    r: &ReactionMapping,
) -> Result<(), StoreError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &r.room_id.as_str(),
        &r.target_remote_id,
        &r.sender.as_str(),
        &r.key,
        &r.event_id.as_str(),
        &r.remote_id,
    ];
    let inserted = run(
        c,
        &format!(
            "INSERT INTO reactions ({REACTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING"
        ),
        &params,
    )
    .await?;
    if inserted == 1 {
        return Ok(());
    }
    let existing = rows(
        c,
        &format!(
            "SELECT {REACTION_COLUMNS} FROM reactions
                 WHERE (room_id = $1 AND target_remote_id = $2 AND sender = $3 AND key = $4)
                    OR event_id = $5"
        ),
        &params[..5],
    )
    .await?;
    let existing = existing
        .iter()
        .map(reaction_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if existing.iter().all(|e| e == r) {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "{} already reacted with {:?} to {} in {}, or event {} is another reaction",
            r.sender, r.key, r.target_remote_id, r.room_id, r.event_id
        )))
    }
}

pub(super) async fn reaction_query(
    c: &impl GenericClient,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<ReactionMapping>, StoreError> {
    let rows = rows(
        c,
        &format!("SELECT {REACTION_COLUMNS} FROM reactions {filter}"),
        params,
    )
    .await?;
    rows.iter().map(reaction_from_row).collect()
}

pub(super) fn reaction_columns() -> &'static str {
    REACTION_COLUMNS
}
