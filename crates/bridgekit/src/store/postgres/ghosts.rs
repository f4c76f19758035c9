//! Ghosts in PostgreSQL, with their rooms (joined, and the profile set per room).

use deadpool_postgres::GenericClient;
use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::Value;
use tokio_postgres::Row;

use super::{corrupt, metadata, row_opt, run};
use crate::store::StoreError;
use crate::store::records::{GhostRecord, RoomProfile};

pub(super) const GHOST_COLUMNS: &str =
    "user_id, remote_id, registered, displayname, avatar_url, metadata";

pub(super) fn ghost_from_row(row: &Row) -> Result<(OwnedUserId, GhostRecord), StoreError> {
    let user: &str = row.get(0);
    Ok((
        UserId::parse(user).map_err(|e| corrupt("ghosts", e))?,
        GhostRecord {
            remote_id: row.get(1),
            registered: row.get(2),
            displayname: row.get(3),
            avatar_url: row.get(4),
            metadata: row.get::<_, Option<Value>>(5).unwrap_or(Value::Null),
        },
    ))
}

pub(super) async fn load_ghost(
    c: &impl GenericClient,
    user_id: &UserId,
    for_update: bool,
) -> Result<GhostRecord, StoreError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let row = row_opt(
        c,
        &format!("SELECT {GHOST_COLUMNS} FROM ghosts WHERE user_id = $1{lock}"),
        &[&user_id.as_str()],
    )
    .await?;
    match row {
        None => Ok(GhostRecord::default()),
        Some(row) => Ok(ghost_from_row(&row)?.1),
    }
}

pub(super) async fn store_ghost(
    c: &impl GenericClient,
    user_id: &UserId,
    g: &GhostRecord,
) -> Result<(), StoreError> {
    run(
        c,
        "INSERT INTO ghosts (user_id, remote_id, registered, displayname, avatar_url, metadata)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id) DO UPDATE SET remote_id = EXCLUDED.remote_id,
             registered = EXCLUDED.registered, displayname = EXCLUDED.displayname,
             avatar_url = EXCLUDED.avatar_url, metadata = EXCLUDED.metadata",
        &[
            &user_id.as_str(),
            &g.remote_id,
            &g.registered,
            &g.displayname,
            &g.avatar_url,
            &metadata(&g.metadata),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn set_joined(
    c: &impl GenericClient,
    user_id: &UserId,
    room_id: &RoomId,
    joined: bool,
) -> Result<(), StoreError> {
    run(
        c,
        "INSERT INTO ghost_rooms (user_id, room_id, joined) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, room_id) DO UPDATE SET joined = EXCLUDED.joined",
        &[&user_id.as_str(), &room_id.as_str(), &joined],
    )
    .await?;
    Ok(())
}

pub(super) async fn set_room_profile(
    c: &impl GenericClient,
    user_id: &UserId,
    room_id: &RoomId,
    profile: &RoomProfile,
) -> Result<(), StoreError> {
    run(c,
        "INSERT INTO ghost_rooms (user_id, room_id, displayname, avatar_url) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, room_id)
         DO UPDATE SET displayname = EXCLUDED.displayname, avatar_url = EXCLUDED.avatar_url",
        &[&user_id.as_str(), &room_id.as_str(), &profile.0, &profile.1],
    ).await?;
    Ok(())
}

impl super::PostgresStore {
    /// Changes a ghost's record in one transaction (the store's cache is kept by the caller).
    pub(super) async fn update_ghost_pg(
        &self,
        user_id: &UserId,
        change: &(dyn for<'r> Fn(&'r mut GhostRecord) + Send + Sync),
    ) -> Result<GhostRecord, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(super::db)?;
        // The row exists before it is locked, so two first updates cannot both insert.
        super::run(
            &tx,
            "INSERT INTO ghosts (user_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&user_id.as_str()],
        )
        .await?;
        let mut record = load_ghost(&tx, user_id, true).await?;
        change(&mut record);
        store_ghost(&tx, user_id, &record).await?;
        tx.commit().await.map_err(super::db)?;
        Ok(record)
    }
}
