//! Message mappings in PostgreSQL. Uniqueness in both directions is the table's own
//! (primary key plus a unique event ID); an insert that hits either is checked against the
//! row it hit, so repeating the same mapping is a no-op.

use deadpool_postgres::GenericClient;
use ruma::{EventId, RoomId, UserId};
use tokio_postgres::Row;

use super::{parse, rows, run};
use crate::store::StoreError;
use crate::store::records::MessageMapping;

const MESSAGE_COLUMNS: &str = "room_id, remote_id, part, event_id, sender, ts";

pub(super) fn message_from_row(row: &Row) -> Result<MessageMapping, StoreError> {
    let t = "messages";
    Ok(MessageMapping {
        room_id: parse(t, row.get(0), |s| RoomId::parse(s))?,
        remote_id: row.get(1),
        part: row.get(2),
        event_id: parse(t, row.get(3), |s| EventId::parse(s))?,
        sender: row
            .get::<_, Option<&str>>(4)
            .map(|s| parse(t, s, |s| UserId::parse(s)))
            .transpose()?,
        timestamp: row
            .get::<_, Option<i64>>(5)
            .and_then(|ts| ruma::UInt::try_from(ts).ok())
            .map(ruma::MilliSecondsSinceUnixEpoch),
    })
}

pub(super) async fn insert_message(
    c: &impl GenericClient,
    m: &MessageMapping,
) -> Result<(), StoreError> {
    let ts = m.timestamp.map(|t| i64::from(t.get()));
    let sender = m.sender.as_ref().map(|s| s.as_str());
    let inserted = run(
        c,
        "INSERT INTO messages (room_id, remote_id, part, event_id, sender, ts)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        &[
            &m.room_id.as_str(),
            &m.remote_id,
            &m.part,
            &m.event_id.as_str(),
            &sender,
            &ts,
        ],
    )
    .await?;
    if inserted == 1 {
        return Ok(());
    }
    let existing = rows(
        c,
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE (room_id = $1 AND remote_id = $2 AND part = $3) OR event_id = $4"
        ),
        &[
            &m.room_id.as_str(),
            &m.remote_id,
            &m.part,
            &m.event_id.as_str(),
        ],
    )
    .await?;
    let existing = existing
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if existing.iter().all(|e| e == m) {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "remote message {} (part {:?}) in {} or event {} is already mapped to something else",
            m.remote_id, m.part, m.room_id, m.event_id
        )))
    }
}

pub(super) async fn message_query(
    c: &impl GenericClient,
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<MessageMapping>, StoreError> {
    let rows = rows(
        c,
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages {filter}"),
        params,
    )
    .await?;
    rows.iter().map(message_from_row).collect()
}

pub(super) fn message_columns() -> &'static str {
    MESSAGE_COLUMNS
}
