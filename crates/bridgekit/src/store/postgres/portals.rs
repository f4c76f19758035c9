//! Portals in PostgreSQL: remote chat (and receiver) ↔ Matrix room, unique both ways.

use deadpool_postgres::GenericClient;
use ruma::RoomId;
use serde_json::Value;
use tokio_postgres::Row;

use super::{corrupt, metadata, run};
use crate::store::StoreError;
use crate::store::records::{Portal, PortalKey};

pub(super) const PORTAL_COLUMNS: &str = "remote_id, receiver, room_id, metadata";

pub(super) fn portal_from_row(row: &Row) -> Result<Portal, StoreError> {
    let receiver: String = row.get(1);
    let room: &str = row.get(2);
    Ok(Portal {
        key: PortalKey {
            remote_id: row.get(0),
            receiver: crate::ids::LoginId::new(receiver).ok(),
        },
        room_id: RoomId::parse(room).map_err(|e| corrupt("portals", e))?,
        metadata: row.get::<_, Option<Value>>(3).unwrap_or(Value::Null),
    })
}

pub(super) async fn put_portal(c: &impl GenericClient, p: &Portal) -> Result<(), StoreError> {
    run(
        c,
        "INSERT INTO portals (remote_id, receiver, room_id, metadata) VALUES ($1, $2, $3, $4)
         ON CONFLICT (remote_id, receiver)
         DO UPDATE SET room_id = EXCLUDED.room_id, metadata = EXCLUDED.metadata",
        &[
            &p.key.remote_id,
            &p.key.receiver.as_deref().unwrap_or(""),
            &p.room_id.as_str(),
            &metadata(&p.metadata),
        ],
    )
    .await?;
    Ok(())
}

impl super::PostgresStore {
    /// Deletes a portal (the store's cache is kept by the caller).
    pub(super) async fn delete_portal_pg(
        &self,
        key: &PortalKey,
    ) -> Result<Option<Portal>, StoreError> {
        let c = self.client().await?;
        let row = super::row_opt(
            &c,
            &format!(
                "DELETE FROM portals WHERE remote_id = $1 AND receiver = $2 RETURNING {PORTAL_COLUMNS}"
            ),
            &[
                &key.remote_id.as_str(),
                &key.receiver.as_ref().map_or("", |r| r.as_str()),
            ],
        )
        .await?;
        row.as_ref().map(portal_from_row).transpose()
    }
}
