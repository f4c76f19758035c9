//! The store's promises, checked the same way on every backend: each test below runs once
//! on a sled directory and once on a schema of a throwaway PostgreSQL cluster.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bridgekit::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, owned_room_id};
use bridgekit::store::postgres::PostgresStore;
use bridgekit::store::queues::{InboxItem, IncomingTransaction, ItemKind, OutboxEntry, OutboxOp};
use bridgekit::store::{
    GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, Record, Recorded, SledStore,
    Store, StoreError, StoreExt,
};
use common::postgres::{cluster, fresh_schema};
use serde_json::value::RawValue;

type Opener = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn Store>, StoreError>>>>>;

/// A store under test and a way to open it again (after dropping the first handle).
struct Subject {
    store: Option<Arc<dyn Store>>,
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
                Ok(Arc::new(store) as Arc<dyn Store>)
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
                Ok(Arc::new(store) as Arc<dyn Store>)
            })
        });
        Self {
            store: None,
            open,
            _dir: None,
        }
    }

    async fn store(&mut self) -> Arc<dyn Store> {
        if self.store.is_none() {
            self.store = Some((self.open)().await.unwrap());
        }
        self.store.clone().unwrap()
    }

    /// Drops the open store (flushed first) and opens it again.
    async fn reopen(&mut self) -> Arc<dyn Store> {
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
    outbox_survives_reopen_and_completion_stores_the_mapping,
    the_boot_counter_grows_across_reopen,
    concurrent_writers_never_split_a_mapping,
    a_second_open_is_refused_while_the_first_holds_the_store,
    export_then_import_reproduces_every_record,
);

fn room() -> OwnedRoomId {
    owned_room_id!("!portal:example.org")
}

fn ev(n: impl std::fmt::Display) -> OwnedEventId {
    format!("$event{n}").try_into().unwrap()
}

fn ghost(name: &str) -> OwnedUserId {
    format!("@_bk_{name}:example.org").try_into().unwrap()
}

async fn message_mappings_resolve_both_ways_and_survive_reopen(mut s: Subject) {
    let store = s.store().await;
    let caption = MessageMapping::new(room(), "m1", ev(1))
        .with_sender(ghost("alice"))
        .with_timestamp(1_700_000_000_000);
    let image = MessageMapping::new(room(), "m1", ev(2)).with_part("image");
    let tenth = MessageMapping::new(room(), "m1", ev(3)).with_part("10");
    for m in [&caption, &image, &tenth] {
        store.insert_message(m).await.unwrap();
    }
    store.insert_message(&caption).await.unwrap(); // the same mapping again is a no-op

    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store.message_by_remote(&room(), "m1", "").await.unwrap(),
        Some(caption.clone())
    );
    assert_eq!(
        store.message_by_event(&ev(2)).await.unwrap(),
        Some(image.clone())
    );
    let parts = store.message_parts(&room(), "m1").await.unwrap();
    assert_eq!(
        parts,
        [caption.clone(), tenth, image.clone()],
        "ordered by part"
    );
    assert_eq!(
        store.message_by_remote(&room(), "m2", "").await.unwrap(),
        None
    );
    let other_room = owned_room_id!("!other:example.org");
    assert_eq!(
        store
            .message_by_remote(&other_room, "m1", "")
            .await
            .unwrap(),
        None,
        "remote IDs are scoped to their room"
    );

    assert_eq!(store.delete_message(&ev(2)).await.unwrap(), Some(image));
    assert_eq!(
        store
            .message_by_remote(&room(), "m1", "image")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.message_by_event(&ev(2)).await.unwrap(), None);
    assert_eq!(store.delete_message(&ev(2)).await.unwrap(), None);
    // Once deleted, the remote part can be mapped again.
    let again = MessageMapping::new(room(), "m1", ev(4)).with_part("image");
    store.insert_message(&again).await.unwrap();
    assert_eq!(store.message_parts(&room(), "m1").await.unwrap().len(), 3);
}

async fn conflicting_message_mappings_change_nothing(mut s: Subject) {
    let store = s.store().await;
    let first = MessageMapping::new(room(), "r1", ev("a"));
    store.insert_message(&first).await.unwrap();
    let same_remote = MessageMapping::new(room(), "r1", ev("b"));
    let same_event = MessageMapping::new(room(), "r2", ev("a"));
    let same_but_sender = first.clone().with_sender(ghost("x"));
    for bad in [&same_remote, &same_event, &same_but_sender] {
        let err = store.insert_message(bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
    assert_eq!(
        store.message_by_remote(&room(), "r2", "").await.unwrap(),
        None
    );
    assert_eq!(store.message_by_event(&ev("b")).await.unwrap(), None);
    assert_eq!(
        store.message_by_remote(&room(), "r1", "").await.unwrap(),
        Some(first)
    );
}

async fn reactions_are_keyed_by_target_sender_and_key(mut s: Subject) {
    let store = s.store().await;
    let thumbs =
        ReactionMapping::new(room(), "m1", ghost("bob"), "👍", ev("r1")).with_remote_id("x1");
    let heart = ReactionMapping::new(room(), "m1", ghost("bob"), "❤️", ev("r2"));
    store.insert_reaction(&thumbs).await.unwrap();
    store.insert_reaction(&heart).await.unwrap();
    store.insert_reaction(&thumbs).await.unwrap();
    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store
            .reaction(&room(), "m1", &ghost("bob"), "👍")
            .await
            .unwrap(),
        Some(thumbs.clone())
    );
    assert_eq!(
        store
            .reaction(&room(), "m1", &ghost("carol"), "👍")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.reaction_by_event(&ev("r2")).await.unwrap(),
        Some(heart)
    );
    // The same reaction key by the same sender on the same message is one reaction.
    let duplicate = ReactionMapping::new(room(), "m1", ghost("bob"), "👍", ev("r3"));
    assert!(matches!(
        store.insert_reaction(&duplicate).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.reaction_by_event(&ev("r3")).await.unwrap(), None);
    assert_eq!(
        store.delete_reaction(&ev("r1")).await.unwrap(),
        Some(thumbs)
    );
    assert_eq!(
        store
            .reaction(&room(), "m1", &ghost("bob"), "👍")
            .await
            .unwrap(),
        None
    );
    store.insert_reaction(&duplicate).await.unwrap();
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ChannelInfo {
    topic: String,
    modes: Vec<char>,
}

async fn portals_are_unique_both_ways(mut s: Subject) {
    let store = s.store().await;
    let info = ChannelInfo {
        topic: "rust".into(),
        modes: vec!['n', 't'],
    };
    let channel = Portal::new(PortalKey::new("#rust"), room())
        .with_metadata(&info)
        .unwrap();
    let dm = Portal::new(
        PortalKey::new("alice").with_receiver("bob"),
        owned_room_id!("!dm:example.org"),
    );
    store.put_portal(&channel).await.unwrap();
    store.put_portal(&dm).await.unwrap();
    drop(store);
    let store = s.reopen().await;
    let found = store
        .portal_by_key(&PortalKey::new("#rust"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.metadata_as::<ChannelInfo>().unwrap(), Some(info));
    assert_eq!(
        store.portal_by_room(&room()).await.unwrap(),
        Some(channel.clone())
    );
    assert_eq!(
        store.portal_by_key(&PortalKey::new("alice")).await.unwrap(),
        None,
        "a receiver makes a different portal"
    );
    assert_eq!(
        store
            .portal_by_key(&PortalKey::new("alice").with_receiver("bob"))
            .await
            .unwrap(),
        Some(dm.clone())
    );
    // A room already bridged to another chat is refused.
    let thief = Portal::new(PortalKey::new("#go"), room());
    assert!(matches!(
        store.put_portal(&thief).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.portal_by_key(&PortalKey::new("#go")).await.unwrap(),
        None
    );
    // A chat moved to a new room frees its old one.
    let moved = Portal::new(PortalKey::new("#rust"), owned_room_id!("!new:example.org"));
    store.put_portal(&moved).await.unwrap();
    assert_eq!(store.portal_by_room(&room()).await.unwrap(), None);
    store.put_portal(&thief).await.unwrap();
    let keys: Vec<_> = store
        .portals()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(
        keys,
        [
            PortalKey::new("#go"),
            PortalKey::new("#rust"),
            PortalKey::new("alice").with_receiver("bob")
        ]
    );
    assert_eq!(
        store.delete_portal(&PortalKey::new("#go")).await.unwrap(),
        Some(thief)
    );
    assert_eq!(store.portal_by_room(&room()).await.unwrap(), None);
}

async fn ghosts_keep_remote_ids_rooms_profiles_and_metadata(mut s: Subject) {
    let store = s.store().await;
    let alice = ghost("alice");
    assert_eq!(store.ghost(&alice).await.unwrap(), GhostRecord::default());
    let updated = store
        .update_ghost(&alice, &|g| {
            g.registered = true;
            g.remote_id = Some("alice@irc".into());
            g.displayname = Some("Alice".into());
            g.set_metadata(&vec![1, 2, 3]).unwrap();
        })
        .await
        .unwrap();
    assert!(updated.registered);
    let r1 = owned_room_id!("!b:example.org");
    let r2 = owned_room_id!("!a:example.org");
    store.set_joined(&alice, &r1, true).await.unwrap();
    store.set_joined(&alice, &r2, true).await.unwrap();
    store
        .set_room_profile(&alice, &r1, &(Some("Alice in b".into()), None))
        .await
        .unwrap();

    drop(store);
    let store = s.reopen().await;
    let record = store.ghost(&alice).await.unwrap();
    assert_eq!(record, updated);
    assert_eq!(
        record.metadata_as::<Vec<u32>>().unwrap(),
        Some(vec![1, 2, 3])
    );
    let (user, by_remote) = store.ghost_by_remote("alice@irc").await.unwrap().unwrap();
    assert_eq!((user, by_remote), (alice.clone(), updated));
    assert_eq!(
        store.joined_rooms(&alice).await.unwrap(),
        [r2.clone(), r1.clone()]
    );
    assert!(store.is_joined(&alice, &r1).await.unwrap());
    assert_eq!(
        store.room_profile(&alice, &r1).await.unwrap(),
        (Some("Alice in b".into()), None)
    );
    assert_eq!(store.room_profile(&alice, &r2).await.unwrap(), (None, None));
    store.set_joined(&alice, &r1, false).await.unwrap();
    assert!(!store.is_joined(&alice, &r1).await.unwrap());
    assert_eq!(store.joined_rooms(&alice).await.unwrap(), [r2]);

    // A remote user has one ghost.
    let err = store
        .update_ghost(&ghost("mallory"), &|g| {
            g.remote_id = Some("alice@irc".into())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.ghost(&ghost("mallory")).await.unwrap().remote_id,
        None
    );
    // Renaming the remote ID frees the old one.
    store
        .update_ghost(&alice, &|g| g.remote_id = Some("alice2@irc".into()))
        .await
        .unwrap();
    assert!(store.ghost_by_remote("alice@irc").await.unwrap().is_none());
    assert_eq!(
        store
            .ghost_by_remote("alice2@irc")
            .await
            .unwrap()
            .unwrap()
            .0,
        alice
    );
}

async fn bridge_values_are_typed_by_the_bridge(mut s: Subject) {
    let store = s.store().await;
    let info = ChannelInfo {
        topic: "x".into(),
        modes: vec!['s'],
    };
    store.put_typed("irc", "#x", &info).await.unwrap();
    store.put_typed("irc", "cursor", &42u64).await.unwrap();
    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store.get_typed::<ChannelInfo>("irc", "#x").await.unwrap(),
        Some(info)
    );
    assert_eq!(
        store.get_typed::<u64>("irc", "cursor").await.unwrap(),
        Some(42)
    );
    assert_eq!(
        store.get_typed::<u64>("other", "cursor").await.unwrap(),
        None
    );
    assert!(matches!(
        store.get_typed::<ChannelInfo>("irc", "cursor").await,
        Err(StoreError::Encode(_))
    ));
    store.set_value("irc", "cursor", None).await.unwrap();
    assert_eq!(store.value("irc", "cursor").await.unwrap(), None);
}

fn item(queue: &str, n: u32) -> InboxItem {
    InboxItem {
        kind: ItemKind::Timeline,
        queue: queue.into(),
        json: format!(r#"{{"n":{n}}}"#),
    }
}

fn txn(key: &str, items: Vec<InboxItem>) -> IncomingTransaction {
    IncomingTransaction {
        key: key.as_bytes().to_vec(),
        items,
    }
}

async fn transactions_are_recorded_once_and_the_inbox_survives_reopen(mut s: Subject) {
    let store = s.store().await;
    let out = store
        .record_transactions(&[
            txn("t1", vec![item("!a", 1), item("!b", 2)]),
            txn("t1", vec![item("!a", 1), item("!b", 2)]),
            txn("t2", vec![item("!a", 3)]),
        ])
        .await
        .unwrap();
    let Recorded::New(first) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(out[1], Recorded::Duplicate, "a repeat within one batch");
    assert!(matches!(out[2], Recorded::New(_)));
    assert!(first[0] < first[1], "sequence follows the order of events");

    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store
            .record_transactions(&[txn("t2", vec![item("!a", 3)])])
            .await
            .unwrap(),
        [Recorded::Duplicate],
        "a retry after a restart"
    );
    let pending = store.pending_items().await.unwrap();
    let bodies: Vec<_> = pending.iter().map(|(_, i)| i.json.as_str()).collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    store.complete_item(pending[0].0).await.unwrap();
    assert_eq!(store.stats().await.unwrap().inbox_depth, 2);

    // Pruning keeps the newest records: t2 stays a duplicate, t1 is forgotten.
    assert_eq!(store.prune_transaction_records(1).await.unwrap(), 1);
    assert_eq!(
        store
            .record_transactions(&[txn("t2", vec![])])
            .await
            .unwrap(),
        [Recorded::Duplicate]
    );
    assert!(matches!(
        store
            .record_transactions(&[txn("t1", vec![])])
            .await
            .unwrap()[0],
        Recorded::New(_)
    ));
}

fn outgoing(n: u32) -> OutboxEntry {
    OutboxEntry {
        room_id: room(),
        sender: ghost("g"),
        txn_id: format!("t{n}").into(),
        op: OutboxOp::Message {
            event_type: "m.room.message".into(),
            content: RawValue::from_string(format!(r#"{{"body":"{n}"}}"#)).unwrap(),
        },
        timestamp: None,
        remote_id: Some(format!("r{n}")),
    }
}

async fn outbox_survives_reopen_and_completion_stores_the_mapping(mut s: Subject) {
    let store = s.store().await;
    let one = store.outbox_push(&outgoing(1)).await.unwrap();
    let two = store.outbox_push(&outgoing(2)).await.unwrap();
    store.outbox_push(&outgoing(3)).await.unwrap();
    assert!(one < two);
    drop(store);
    let store = s.reopen().await;
    let pending = store.outbox_pending().await.unwrap();
    let txns: Vec<String> = pending.iter().map(|(_, e)| e.txn_id.to_string()).collect();
    assert_eq!(txns, ["t1", "t2", "t3"]);
    let OutboxOp::Message { content, .. } = &pending[1].1.op else {
        panic!()
    };
    assert_eq!(
        content.get(),
        r#"{"body":"2"}"#,
        "content kept byte for byte"
    );

    let mapping = MessageMapping::new(room(), "r1", ev("out1"));
    store.outbox_complete(one, Some(&mapping)).await.unwrap();
    assert_eq!(store.stats().await.unwrap().outbox_depth, 2);
    assert_eq!(
        store.message_by_event(&ev("out1")).await.unwrap(),
        Some(mapping)
    );
    // A mapping that conflicts still completes the send (it cannot be retried into shape).
    let clash = MessageMapping::new(room(), "r1", ev("out2"));
    let err = store.outbox_complete(two, Some(&clash)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.stats().await.unwrap().outbox_depth, 1);
}

async fn the_boot_counter_grows_across_reopen(mut s: Subject) {
    let a = s.store().await.next_boot().await.unwrap();
    let b = s.reopen().await.next_boot().await.unwrap();
    assert_eq!(b, a + 1);
}

async fn concurrent_writers_never_split_a_mapping(mut s: Subject) {
    let store = s.store().await;
    // 8 writers race for the same 50 remote IDs, each with its own event IDs.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = 0;
                for n in 0..50 {
                    let m = MessageMapping::new(room(), format!("r{n}"), ev(format!("{w}_{n}")));
                    match store.insert_message(&m).await {
                        Ok(()) => won += 1,
                        Err(StoreError::Conflict(_)) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 50, "each remote ID is won exactly once");
    for n in 0..50 {
        let m = store
            .message_by_remote(&room(), &format!("r{n}"), "")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.message_by_event(&m.event_id).await.unwrap(), Some(m));
    }
    // Read-modify-write of one ghost from many tasks loses no update.
    let counters: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update_ghost(&ghost("counter"), &|g| {
                        let n = g.metadata.as_u64().unwrap_or(0);
                        g.metadata = (n + 1).into();
                    })
                    .await
                    .unwrap();
            })
        })
        .collect();
    for c in counters {
        c.await.unwrap();
    }
    assert_eq!(store.ghost(&ghost("counter")).await.unwrap().metadata, 16);
}

async fn a_second_open_is_refused_while_the_first_holds_the_store(mut s: Subject) {
    let _first = s.store().await;
    let err = (s.open)().await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

/// Fills a store with one of everything.
async fn fill(store: &dyn Store) {
    store
        .insert_message(&MessageMapping::new(room(), "m1", ev(1)).with_sender(ghost("a")))
        .await
        .unwrap();
    store
        .insert_reaction(&ReactionMapping::new(room(), "m1", ghost("a"), "👍", ev(2)))
        .await
        .unwrap();
    store
        .put_portal(&Portal::new(
            PortalKey::new("#c").with_receiver("me"),
            room(),
        ))
        .await
        .unwrap();
    store
        .update_ghost(&ghost("a"), &|g| {
            g.registered = true;
            g.remote_id = Some("a".into());
        })
        .await
        .unwrap();
    store.set_joined(&ghost("a"), &room(), true).await.unwrap();
    store
        .set_room_profile(&ghost("a"), &room(), &(Some("A".into()), None))
        .await
        .unwrap();
    store.put_typed("ns", "k", &vec!["v"]).await.unwrap();
    store
        .record_transactions(&[txn("t1", vec![item("!a", 1), item("!a", 2)])])
        .await
        .unwrap();
    store.outbox_push(&outgoing(1)).await.unwrap();
    store.outbox_push(&outgoing(2)).await.unwrap();
    store.next_boot().await.unwrap();
}

fn lines(records: Vec<Record>) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    out.sort();
    out
}

async fn export_then_import_reproduces_every_record(mut s: Subject) {
    let store = s.store().await;
    assert!(store.is_empty().await.unwrap());
    fill(&*store).await;
    assert!(!store.is_empty().await.unwrap());
    let mut exported = Vec::new();
    store.export(&mut exported).await.unwrap();
    assert_eq!(exported.len(), 13, "{exported:#?}");

    // Into a fresh store of the other backend, and back again.
    let dir = tempfile::tempdir().unwrap();
    let other: Arc<dyn Store> = if store.backend() == "sled" {
        Arc::new(
            PostgresStore::open(&cluster().url, &fresh_schema("copy"))
                .await
                .unwrap(),
        )
    } else {
        Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap())
    };
    let report = bridgekit::store::export::migrate(&*store, &*other)
        .await
        .unwrap();
    assert_eq!(
        (
            report.messages,
            report.reactions,
            report.portals,
            report.ghosts
        ),
        (1, 1, 1, 1)
    );
    let mut copied = Vec::new();
    other.export(&mut copied).await.unwrap();
    assert_eq!(lines(copied), lines(exported));
    // The copy behaves, not only looks, the same.
    assert_eq!(
        other
            .record_transactions(&[txn("t1", vec![])])
            .await
            .unwrap(),
        [Recorded::Duplicate]
    );
    let pending = other.outbox_pending().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].1.txn_id.as_str(), "t1");
    assert!(
        other.next_boot().await.unwrap() >= 2,
        "boot counter carried over"
    );
    // A store that holds records is not a migration target.
    assert!(matches!(
        bridgekit::store::export::migrate(&*store, &*other).await,
        Err(StoreError::TargetNotEmpty)
    ));
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
            .message_by_remote(&room(), "old", "")
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
            .insert_message(&MessageMapping::new(room(), "old", ev(9)).with_part("2"))
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
