//! The store's promises, checked the same way on every backend: each test below runs once
//! on a sled directory and once on a schema of a throwaway PostgreSQL cluster.

#[path = "../common/mod.rs"]
mod common;
mod entities;
mod queues;
mod transfer;
mod users;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bridgekit::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, owned_room_id};
use bridgekit::store::postgres::PostgresStore;
use bridgekit::store::queues::{InboxItem, IncomingTransaction, ItemKind, OutboxEntry, OutboxOp};
use bridgekit::store::{
    Backend, GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, Record, Recorded,
    SledStore, Store, StoreError, StoreExt,
};
use common::postgres::{cluster, fresh_schema};
use entities::*;
use queues::*;
use serde_json::value::RawValue;
use transfer::*;
use users::*;

pub(crate) fn mid(s: &str) -> bridgekit::MessageId {
    bridgekit::MessageId::new(s).unwrap()
}

pub(crate) fn pid(s: &str) -> bridgekit::PartId {
    bridgekit::PartId::new(s).unwrap()
}

pub(crate) fn cid(s: &str) -> bridgekit::ChatId {
    bridgekit::ChatId::new(s).unwrap()
}

pub(crate) fn lid(s: &str) -> bridgekit::LoginId {
    bridgekit::LoginId::new(s).unwrap()
}

pub(crate) fn uid(s: &str) -> bridgekit::RemoteUserId {
    bridgekit::RemoteUserId::new(s).unwrap()
}

pub(crate) fn ts(millis: u64) -> bridgekit::ruma::MilliSecondsSinceUnixEpoch {
    bridgekit::ruma::MilliSecondsSinceUnixEpoch(bridgekit::ruma::UInt::new(millis).unwrap())
}

type Opener = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn Backend>, StoreError>>>>>;

/// A store under test and a way to open it again (after dropping the first handle).
struct Subject {
    store: Option<Arc<dyn Backend>>,
    open: Opener,
    _dir: Option<tempfile::TempDir>,
}

impl Subject {
    fn sled() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let open: Opener = Box::new(move || {
            let path = path.clone();
            Box::pin(async move {
                let store = SledStore::open(&path, 4 << 20)?;
                Ok(Arc::new(store) as Arc<dyn Backend>)
            })
        });
        Self {
            store: None,
            open,
            _dir: Some(dir),
        }
    }

    fn postgres() -> Self {
        let url = cluster().url.clone();
        let schema = fresh_schema("suite");
        let open: Opener = Box::new(move || {
            let (url, schema) = (url.clone(), schema.clone());
            Box::pin(async move {
                let store = PostgresStore::open(&url, &schema).await?;
                Ok(Arc::new(store) as Arc<dyn Backend>)
            })
        });
        Self {
            store: None,
            open,
            _dir: None,
        }
    }

    async fn store(&mut self) -> Arc<dyn Backend> {
        if self.store.is_none() {
            self.store = Some((self.open)().await.unwrap());
        }
        self.store.clone().unwrap()
    }

    /// Drops the open store (flushed first) and opens it again.
    async fn reopen(&mut self) -> Arc<dyn Backend> {
        if let Some(store) = self.store.take() {
            store.flush().await.unwrap();
            drop(store);
        }
        self.store().await
    }
}

/// Runs each listed test on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                super::$name(super::Subject::sled()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Subject::postgres()).await
            }
        }
    )*};
}

on_both_backends!(
    message_mappings_resolve_both_ways_and_survive_reopen,
    conflicting_message_mappings_change_nothing,
    reactions_are_keyed_by_target_sender_and_key,
    portals_are_unique_both_ways,
    ghosts_keep_remote_ids_rooms_profiles_and_metadata,
    bridge_values_are_typed_by_the_bridge,
    transactions_are_recorded_once_and_the_inbox_survives_reopen,
    handled_items_stay_handled_across_reopen,
    outbox_survives_reopen_and_completion_stores_the_mapping,
    the_remote_queue_survives_reopen_in_order,
    the_boot_counter_grows_across_reopen,
    concurrent_writers_never_split_a_mapping,
    concurrent_repeats_of_a_mapping_all_succeed_and_keep_every_column,
    a_second_open_is_refused_while_the_first_holds_the_store,
    export_then_import_reproduces_every_record,
    users_and_logins_survive_reopen_and_belong_to_one_user,
    logins_are_placed_in_portals_with_one_preferred_per_user,
);

pub(crate) fn room() -> OwnedRoomId {
    owned_room_id!("!portal:example.org")
}

pub(crate) fn ev(n: impl std::fmt::Display) -> OwnedEventId {
    format!("$event{n}").try_into().unwrap()
}

pub(crate) fn ghost(name: &str) -> OwnedUserId {
    format!("@_bk_{name}:example.org").try_into().unwrap()
}

#[tokio::test]
async fn a_postgres_schema_from_version_1_is_upgraded_and_a_newer_one_refused() {
    let url = &cluster().url;
    let schema = fresh_schema("v1");
    PostgresStore::create_at_version(url, &schema, 1)
        .await
        .unwrap();
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.messages (room_id, remote_id, event_id, sender)
             VALUES ('!portal:example.org', 'old', '$old', '@_bk_a:example.org');
             INSERT INTO {schema}.ghosts (user_id, registered, displayname)
             VALUES ('@_bk_a:example.org', true, 'A');"
        ))
        .await
        .unwrap();
    {
        let store = PostgresStore::open(url, &schema).await.unwrap();
        let m = store
            .message_by_remote(&room(), &mid("old"), &pid(""))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.event_id, "$old");
        assert_eq!(m.sender, Some(ghost("a")));
        assert_eq!(
            store
                .ghost(&ghost("a"))
                .await
                .unwrap()
                .displayname
                .as_deref(),
            Some("A")
        );
        // Version 2 features work on the upgraded schema.
        store
            .insert_message(&MessageMapping::new(room(), mid("old"), ev(9)).with_part(pid("2")))
            .await
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "UPDATE {schema}.meta SET value = 99 WHERE key = 'schema_version'"
        ))
        .await
        .unwrap();
    let err = PostgresStore::open(url, &schema).await.unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

#[tokio::test]
async fn a_bad_postgres_url_says_what_is_wrong_without_echoing_it() {
    let err = PostgresStore::open("postgresql://u:hunter2@127.0.0.1:1/db", "s")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open(_)), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
