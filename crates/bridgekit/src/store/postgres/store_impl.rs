//! [`Store`] for [`PostgresStore`].

use crate::ids::{LoginId, MessageId, PartId, RemoteUserId};
use async_trait::async_trait;
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::Value;

use super::ghosts::{self, GHOST_COLUMNS, ghost_from_row};
use super::messages::{self, message_query};
use super::portals::{self, PORTAL_COLUMNS, portal_from_row};
use super::reactions::{self, reaction_query};
use super::users;
use super::{PostgresStore, corrupt, db, row, row_opt, rows};
use crate::store::export::{Record, RecordSink};
use crate::store::queues::{InboxItem, IncomingTransaction, OutboxEntry, Recorded, RemoteItem};
use crate::store::records::{
    GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, RoomProfile,
};
use crate::store::users::{LoginRecord, PortalLogin, UserRecord};
use crate::store::{Queues, Store, StoreError, StoreStats, Transfer};

fn first<T>(mut rows: Vec<T>) -> Option<T> {
    (!rows.is_empty()).then(|| rows.swap_remove(0))
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert_message(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        self.mappings.insert(mapping).await
    }
    async fn message_by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        let c = self.client().await?;
        let rows = message_query(&c, "WHERE event_id = $1", &[&event_id.as_str()]).await?;
        Ok(first(rows))
    }
    async fn message_by_remote(
        &self,
        room_id: &RoomId,
        remote_id: &MessageId,
        part: &PartId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        let c = self.client().await?;
        let filter = "WHERE room_id = $1 AND remote_id = $2 AND part = $3";
        let rows = message_query(
            &c,
            filter,
            &[&room_id.as_str(), &remote_id.as_str(), &part.as_str()],
        )
        .await?;
        Ok(first(rows))
    }
    async fn message_parts(
        &self,
        room_id: &RoomId,
        remote_id: &MessageId,
    ) -> Result<Vec<MessageMapping>, StoreError> {
        let c = self.client().await?;
        let filter = "WHERE room_id = $1 AND remote_id = $2 ORDER BY part COLLATE \"C\"";
        message_query(&c, filter, &[&room_id.as_str(), &remote_id.as_str()]).await
    }
    async fn delete_message(
        &self,
        event_id: &EventId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "DELETE FROM messages WHERE event_id = $1 RETURNING {}",
            messages::message_columns()
        );
        let row = row_opt(&c, &sql, &[&event_id.as_str()]).await?;
        row.as_ref().map(messages::message_from_row).transpose()
    }

    async fn insert_reaction(&self, reaction: &ReactionMapping) -> Result<(), StoreError> {
        reactions::insert_reaction(&self.client().await?, reaction).await
    }
    async fn reaction(
        &self,
        room_id: &RoomId,
        target_remote_id: &MessageId,
        sender: &UserId,
        key: &str,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        let c = self.client().await?;
        let filter = "WHERE room_id = $1 AND target_remote_id = $2 AND sender = $3 AND key = $4";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
            &room_id.as_str(),
            &target_remote_id.as_str(),
            &sender.as_str(),
            &key,
        ];
        Ok(first(reaction_query(&c, filter, &params).await?))
    }
    async fn reaction_by_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        let c = self.client().await?;
        let rows = reaction_query(&c, "WHERE event_id = $1", &[&event_id.as_str()]).await?;
        Ok(first(rows))
    }
    async fn delete_reaction(
        &self,
        event_id: &EventId,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "DELETE FROM reactions WHERE event_id = $1 RETURNING {}",
            reactions::reaction_columns()
        );
        let row = row_opt(&c, &sql, &[&event_id.as_str()]).await?;
        row.as_ref().map(reactions::reaction_from_row).transpose()
    }

    async fn put_portal(&self, portal: &Portal) -> Result<(), StoreError> {
        self.cache.forget_portals();
        let written = portals::put_portal(&self.client().await?, portal).await;
        // Again after the write: a read made during it may have seen the old row.
        self.cache.forget_portals();
        written
    }
    async fn portal_by_key(&self, key: &PortalKey) -> Result<Option<Portal>, StoreError> {
        self.cache
            .portals
            .get_or_load(key.clone(), async {
                let c = self.client().await?;
                let row = row_opt(
                    &c,
                    &format!(
                        "SELECT {PORTAL_COLUMNS} FROM portals WHERE remote_id = $1 AND receiver = $2"
                    ),
                    &[
                        &key.remote_id.as_str(),
                        &key.receiver.as_ref().map_or("", |r| r.as_str()),
                    ],
                )
                .await?;
                row.as_ref().map(portal_from_row).transpose()
            })
            .await
    }
    async fn portal_by_room(&self, room_id: &RoomId) -> Result<Option<Portal>, StoreError> {
        self.cache
            .rooms
            .get_or_load(room_id.to_owned(), async {
                let c = self.client().await?;
                let row = row_opt(
                    &c,
                    &format!("SELECT {PORTAL_COLUMNS} FROM portals WHERE room_id = $1"),
                    &[&room_id.as_str()],
                )
                .await?;
                row.as_ref().map(portal_from_row).transpose()
            })
            .await
    }
    async fn delete_portal(&self, key: &PortalKey) -> Result<Option<Portal>, StoreError> {
        self.cache.forget_portals();
        let deleted = self.delete_portal_pg(key).await;
        // Again after the write: a read made during it may have seen the old row.
        self.cache.forget_portals();
        deleted
    }
    async fn portals(&self) -> Result<Vec<Portal>, StoreError> {
        let c = self.client().await?;
        let rows = rows(
            &c,
            &format!(
                "SELECT {PORTAL_COLUMNS} FROM portals
                     ORDER BY remote_id COLLATE \"C\", receiver COLLATE \"C\""
            ),
            &[],
        )
        .await?;
        rows.iter().map(portal_from_row).collect()
    }

    async fn ghost(&self, user_id: &UserId) -> Result<GhostRecord, StoreError> {
        self.cache
            .ghosts
            .get_or_load(user_id.to_owned(), async {
                ghosts::load_ghost(&self.client().await?, user_id, false).await
            })
            .await
    }
    async fn update_ghost(
        &self,
        user_id: &UserId,
        change: &(dyn for<'r> Fn(&'r mut GhostRecord) + Send + Sync),
    ) -> Result<GhostRecord, StoreError> {
        let user = user_id.to_owned();
        self.cache.ghosts.forget(&user);
        self.cache.by_remote.clear();
        let written = self.update_ghost_pg(user_id, change).await;
        // Again after the write, whatever its outcome: a read made during it may have seen
        // the old row.
        match &written {
            Ok(record) => self.cache.ghosts.set(user, record.clone()),
            Err(_) => self.cache.ghosts.forget(&user),
        }
        self.cache.by_remote.clear();
        written
    }
    async fn ghost_by_remote(
        &self,
        remote_id: &RemoteUserId,
    ) -> Result<Option<(OwnedUserId, GhostRecord)>, StoreError> {
        self.cache
            .by_remote
            .get_or_load(remote_id.clone(), async {
                let c = self.client().await?;
                let row = row_opt(
                    &c,
                    &format!("SELECT {GHOST_COLUMNS} FROM ghosts WHERE remote_id = $1"),
                    &[&remote_id.as_str()],
                )
                .await?;
                row.as_ref().map(ghost_from_row).transpose()
            })
            .await
    }
    async fn set_joined(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        joined: bool,
    ) -> Result<(), StoreError> {
        let key = (user_id.to_owned(), room_id.to_owned());
        self.cache.joined.forget(&key);
        let written = ghosts::set_joined(&self.client().await?, user_id, room_id, joined).await;
        match written {
            Ok(()) => self.cache.joined.set(key, joined),
            Err(_) => self.cache.joined.forget(&key),
        }
        written
    }
    async fn is_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool, StoreError> {
        let key = (user_id.to_owned(), room_id.to_owned());
        self.cache
            .joined
            .get_or_load(key, async {
                let c = self.client().await?;
                let row = row_opt(
                    &c,
                    "SELECT joined FROM ghost_rooms WHERE user_id = $1 AND room_id = $2",
                    &[&user_id.as_str(), &room_id.as_str()],
                )
                .await?;
                Ok(row.is_some_and(|r| r.get(0)))
            })
            .await
    }
    async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>, StoreError> {
        let c = self.client().await?;
        let rows = rows(
            &c,
            "SELECT room_id FROM ghost_rooms WHERE user_id = $1 AND joined
                 ORDER BY room_id COLLATE \"C\"",
            &[&user_id.as_str()],
        )
        .await?;
        rows.iter()
            .map(|r| RoomId::parse(r.get::<_, &str>(0)).map_err(|e| corrupt("ghost_rooms", e)))
            .collect()
    }
    async fn room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<RoomProfile, StoreError> {
        let c = self.client().await?;
        let row = row_opt(
            &c,
            "SELECT displayname, avatar_url FROM ghost_rooms WHERE user_id = $1 AND room_id = $2",
            &[&user_id.as_str(), &room_id.as_str()],
        )
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))).unwrap_or((None, None)))
    }
    async fn set_room_profile(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        profile: &RoomProfile,
    ) -> Result<(), StoreError> {
        ghosts::set_room_profile(&self.client().await?, user_id, room_id, profile).await
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        users::get_user(&self.client().await?, user_id).await
    }
    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        users::put_user(&self.client().await?, user).await
    }
    async fn put_login(&self, login: &LoginRecord) -> Result<(), StoreError> {
        users::put_login(&self.client().await?, login).await
    }
    async fn login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        users::get_login(&self.client().await?, id).await
    }
    async fn logins_of(&self, user_id: &UserId) -> Result<Vec<LoginRecord>, StoreError> {
        users::logins_of(&self.client().await?, user_id).await
    }
    async fn all_logins(&self) -> Result<Vec<LoginRecord>, StoreError> {
        users::all_logins(&self.client().await?).await
    }
    async fn delete_login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let removed = users::delete_login(&tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }
    async fn put_portal_login(&self, link: &PortalLogin) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        users::put_link(&tx, link).await?;
        tx.commit().await.map_err(db)
    }
    async fn remove_portal_login(
        &self,
        portal: &PortalKey,
        login_id: &LoginId,
    ) -> Result<(), StoreError> {
        users::remove_link(&self.client().await?, portal, login_id).await
    }
    async fn portal_logins(&self, portal: &PortalKey) -> Result<Vec<PortalLogin>, StoreError> {
        users::portal_links(&self.client().await?, portal).await
    }
    async fn login_portals(&self, login_id: &LoginId) -> Result<Vec<PortalLogin>, StoreError> {
        users::login_links(&self.client().await?, login_id).await
    }

    async fn value(&self, namespace: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let c = self.client().await?;
        let row = row_opt(
            &c,
            "SELECT value FROM kv WHERE namespace = $1 AND key = $2",
            &[&namespace, &key],
        )
        .await?;
        Ok(row.map(|r| r.get(0)))
    }
    async fn set_value(
        &self,
        namespace: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), StoreError> {
        super::export::set_value(&self.client().await?, namespace, key, value).await
    }
}

#[async_trait]
impl Queues for PostgresStore {
    async fn next_boot(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = row(
            &c,
            "INSERT INTO meta (key, value) VALUES ('boot', 1)
                 ON CONFLICT (key) DO UPDATE SET value = meta.value + 1 RETURNING value",
            &[],
        )
        .await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
    async fn record_transactions(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError> {
        self.record_transactions_pg(txns).await
    }
    async fn pending_items(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        self.completions.settle().await?;
        self.pending_items_pg().await
    }
    async fn complete_item(&self, seq: u64) -> Result<(), StoreError> {
        self.completions.inbox_item(seq)
    }
    async fn prune_transaction_records(&self, keep: u64) -> Result<u64, StoreError> {
        self.prune_pg(keep).await
    }
    async fn outbox_push(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        super::outbox::append_outbox(&self.client().await?, entry).await
    }
    async fn remote_push(&self, item: &RemoteItem) -> Result<u64, StoreError> {
        super::remote_queue::append_remote(&self.client().await?, item).await
    }
    async fn remote_pending(&self) -> Result<Vec<(u64, RemoteItem)>, StoreError> {
        self.completions.settle().await?;
        self.remote_pending_pg().await
    }
    async fn remote_complete(&self, seq: u64) -> Result<(), StoreError> {
        self.completions.remote_event(seq)
    }
    async fn outbox_pending(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.outbox_pending_pg().await
    }
    async fn outbox_replace(&self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
        let text = serde_json::to_string(entry).map_err(|e| super::corrupt("outbox", e))?;
        super::run(
            &self.client().await?,
            "UPDATE outbox SET entry = $2 WHERE seq = $1",
            &[&(seq as i64), &text],
        )
        .await?;
        Ok(())
    }
    async fn outbox_complete(
        &self,
        seq: u64,
        mapping: Option<&MessageMapping>,
    ) -> Result<(), StoreError> {
        self.outbox_complete_pg(seq, mapping).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.completions.settle().await?;
        self.stats_pg().await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        // Every other commit is durable when it returns; the grouped removals are made now.
        self.completions.settle().await
    }
    async fn lock_lost(&self) -> StoreError {
        self.lock.lost().await
    }
}

#[async_trait]
impl Transfer for PostgresStore {
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.is_empty_pg().await
    }
    async fn export(&self, sink: &mut dyn RecordSink) -> Result<(), StoreError> {
        self.completions.settle().await?;
        self.export_pg(sink).await
    }
    async fn import(&self, records: &[Record]) -> Result<(), StoreError> {
        self.cache.clear();
        let written = self.import_pg(records).await;
        self.cache.clear();
        written
    }
}
