//! Export and import of every record (for `migrate-store`), queue gauges, the emptiness
//! check, and the bridge's own values. Export streams each table through one query; import
//! writes each batch in one transaction, so a million mappings cost a thousand commits, not a
//! million.

use deadpool_postgres::GenericClient;
use futures_util::StreamExt;
use ruma::{RoomId, UserId};
use serde_json::Value;

use super::ghosts::{GHOST_COLUMNS, ghost_from_row, set_joined, set_room_profile, store_ghost};
use super::inbox::{append_items, record_key};
use super::messages::{insert_message, message_columns, message_from_row};
use super::outbox::append_outbox;
use super::portals::{PORTAL_COLUMNS, portal_from_row, put_portal};
use super::reactions::{insert_reaction, reaction_columns, reaction_from_row};
use super::remote_queue::append_remote;
use super::users::{self, LINK_COLUMNS, link_from_row, login_from_row, user_from_row};
use super::{PostgresStore, corrupt, db, row, row_opt, run};
use crate::store::export::{EXPORT_BATCH, Record, RecordSink};
use crate::store::queues::{InboxItem, ItemKind};
use crate::store::{StoreError, StoreStats};

type ToRecord = fn(&tokio_postgres::Row) -> Result<Record, StoreError>;

fn joined(row: &tokio_postgres::Row) -> Result<Record, StoreError> {
    Ok(Record::Joined {
        user_id: UserId::parse(row.get::<_, &str>(0)).map_err(|e| corrupt("ghost_rooms", e))?,
        room_id: RoomId::parse(row.get::<_, &str>(1)).map_err(|e| corrupt("ghost_rooms", e))?,
    })
}

fn room_profile(row: &tokio_postgres::Row) -> Result<Record, StoreError> {
    Ok(Record::RoomProfile {
        user_id: UserId::parse(row.get::<_, &str>(0)).map_err(|e| corrupt("ghost_rooms", e))?,
        room_id: RoomId::parse(row.get::<_, &str>(1)).map_err(|e| corrupt("ghost_rooms", e))?,
        displayname: row.get(2),
        avatar_url: row.get(3),
    })
}

fn inbox(row: &tokio_postgres::Row) -> Result<Record, StoreError> {
    let code: i16 = row.get(0);
    let kind = u8::try_from(code)
        .ok()
        .and_then(ItemKind::from_code)
        .ok_or_else(|| corrupt("inbox", format!("unknown item kind {code}")))?;
    Ok(Record::Inbox(InboxItem {
        kind,
        queue: row.get(1),
        json: row.get(2),
    }))
}

fn remote(row: &tokio_postgres::Row) -> Result<Record, StoreError> {
    let item: &str = row.get(0);
    Ok(Record::Remote(
        serde_json::from_str(item).map_err(|e| corrupt("remote_queue", e))?,
    ))
}

fn outbox(row: &tokio_postgres::Row) -> Result<Record, StoreError> {
    let entry: &str = row.get(0);
    Ok(Record::Outbox(
        serde_json::from_str(entry).map_err(|e| corrupt("outbox", e))?,
    ))
}

impl PostgresStore {
    pub(super) async fn export_pg(&self, sink: &mut dyn RecordSink) -> Result<(), StoreError> {
        let client = self.client().await?;
        let boot = row_opt(&client, "SELECT value FROM meta WHERE key = 'boot'", &[])
            .await?
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0);
        sink.accept(vec![Record::Boot(boot)]).await?;
        let messages = format!("SELECT {} FROM messages", message_columns());
        let reactions = format!("SELECT {} FROM reactions", reaction_columns());
        let portals = format!("SELECT {PORTAL_COLUMNS} FROM portals");
        let ghosts = format!("SELECT {GHOST_COLUMNS} FROM ghosts");
        let links = format!("SELECT {LINK_COLUMNS} FROM portal_logins");
        let tables: [(&str, ToRecord); 15] = [
            (&portals, |r| Ok(Record::Portal(portal_from_row(r)?))),
            ("SELECT record FROM users", |r| {
                Ok(Record::User(user_from_row(r)?))
            }),
            ("SELECT record FROM logins", |r| {
                Ok(Record::Login(login_from_row(r)?))
            }),
            (&links, |r| Ok(Record::PortalLogin(link_from_row(r)?))),
            (&ghosts, |r| {
                let (user_id, record) = ghost_from_row(r)?;
                Ok(Record::Ghost { user_id, record })
            }),
            (
                "SELECT user_id, room_id FROM ghost_rooms WHERE joined",
                joined,
            ),
            (
                "SELECT user_id, room_id, displayname, avatar_url FROM ghost_rooms
                 WHERE displayname IS NOT NULL OR avatar_url IS NOT NULL",
                room_profile,
            ),
            (&messages, |r| Ok(Record::Message(message_from_row(r)?))),
            (&reactions, |r| Ok(Record::Reaction(reaction_from_row(r)?))),
            ("SELECT namespace, key, value FROM kv", |r| {
                Ok(Record::Value {
                    namespace: r.get(0),
                    key: r.get(1),
                    value: r.get(2),
                })
            }),
            ("SELECT key FROM txns ORDER BY seq", |r| {
                Ok(Record::Transaction { key: r.get(0) })
            }),
            ("SELECT kind, queue, json FROM inbox ORDER BY seq", inbox),
            ("SELECT entry FROM outbox ORDER BY seq", outbox),
            ("SELECT item FROM remote_queue ORDER BY seq", remote),
            ("SELECT key, value FROM crypto_state", |r| {
                Ok(Record::Crypto {
                    key: r.get(0),
                    value: r.get(1),
                })
            }),
        ];
        for (sql, to_record) in tables {
            let rows = client
                .query_raw(sql, std::iter::empty::<i32>())
                .await
                .map_err(db)?;
            let mut rows = std::pin::pin!(rows);
            let mut batch = Vec::with_capacity(EXPORT_BATCH);
            while let Some(row) = rows.next().await {
                batch.push(to_record(&row.map_err(db)?)?);
                if batch.len() == EXPORT_BATCH {
                    sink.accept(std::mem::take(&mut batch)).await?;
                }
            }
            if !batch.is_empty() {
                sink.accept(batch).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn import_pg(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let c = &tx;
        for record in records {
            match record {
                Record::Message(m) => insert_message(c, m).await?,
                Record::Reaction(r) => insert_reaction(c, r).await?,
                Record::Portal(p) => put_portal(c, p).await?,
                Record::Ghost { user_id, record } => store_ghost(c, user_id, record).await?,
                Record::Joined { user_id, room_id } => {
                    set_joined(c, user_id, room_id, true).await?
                }
                Record::RoomProfile {
                    user_id,
                    room_id,
                    displayname,
                    avatar_url,
                } => {
                    let profile = (displayname.clone(), avatar_url.clone());
                    set_room_profile(c, user_id, room_id, &profile).await?
                }
                Record::User(user) => users::put_user(c, user).await?,
                Record::Login(login) => users::put_login(c, login).await?,
                Record::PortalLogin(link) => users::put_link(c, link).await?,
                Record::Value {
                    namespace,
                    key,
                    value,
                } => set_value(c, namespace, key, Some(value)).await?,
                Record::Transaction { key } => {
                    record_key(c, key).await?;
                }
                Record::Inbox(item) => {
                    append_items(c, std::slice::from_ref(item)).await?;
                }
                Record::Outbox(entry) => {
                    append_outbox(c, entry).await?;
                }
                Record::Remote(item) => {
                    append_remote(c, item).await?;
                }
                Record::Crypto { key, value } => {
                    super::crypto_state::put(c, key, value).await?;
                }
                Record::Boot(n) => {
                    run(c,
                        "INSERT INTO meta (key, value) VALUES ('boot', $1)
                         ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, EXCLUDED.value)",
                        &[&(*n as i64)],
                    ).await?;
                }
            }
        }
        tx.commit().await.map_err(db)
    }

    pub(super) async fn is_empty_pg(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = row(
            &client,
            "SELECT NOT (EXISTS (SELECT 1 FROM messages) OR EXISTS (SELECT 1 FROM reactions)
                    OR EXISTS (SELECT 1 FROM portals) OR EXISTS (SELECT 1 FROM ghosts)
                    OR EXISTS (SELECT 1 FROM ghost_rooms) OR EXISTS (SELECT 1 FROM kv)
                    OR EXISTS (SELECT 1 FROM txns) OR EXISTS (SELECT 1 FROM inbox)
                    OR EXISTS (SELECT 1 FROM outbox) OR EXISTS (SELECT 1 FROM remote_queue)
                    OR EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM logins)
                    OR EXISTS (SELECT 1 FROM portal_logins) OR EXISTS (SELECT 1 FROM crypto_state))",
            &[],
        )
        .await?;
        Ok(row.get(0))
    }

    pub(super) async fn stats_pg(&self) -> Result<StoreStats, StoreError> {
        let client = self.client().await?;
        let row = row(
            &client,
            "SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM outbox),
                        (SELECT count(*) FROM remote_queue),
                        (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = current_schema() AND c.relkind = 'r')",
            &[],
        )
        .await?;
        Ok(StoreStats {
            inbox_depth: row.get::<_, i64>(0) as u64,
            outbox_depth: row.get::<_, i64>(1) as u64,
            remote_depth: row.get::<_, i64>(2) as u64,
            bytes: row.get::<_, Option<i64>>(3).map(|b| b as u64),
        })
    }
}

pub(super) async fn set_value(
    c: &impl GenericClient,
    namespace: &str,
    key: &str,
    value: Option<&Value>,
) -> Result<(), StoreError> {
    match value {
        Some(value) => {
            run(
                c,
                "INSERT INTO kv (namespace, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value",
                &[&namespace, &key, value],
            )
            .await
        }
        None => {
            run(
                c,
                "DELETE FROM kv WHERE namespace = $1 AND key = $2",
                &[&namespace, &key],
            )
            .await
        }
    }?;
    Ok(())
}
