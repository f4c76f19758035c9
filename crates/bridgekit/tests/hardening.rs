//! Hostile input and failing parts around the bridge, over real HTTP with a fake homeserver:
//! odd but valid input is handled, a full disk stops acknowledgements instead of losing
//! events, and random faults on the send path
//! (5xx, 429, slow answers, a homeserver gone and back) still deliver each send exactly
//! once and in room order.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bridgekit::LoginId;
use bridgekit::ruma::events::room::message::RoomMessageEventContent;
use bridgekit::ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use bridgekit::store::export::{Record, RecordSink};
use bridgekit::store::queues::{InboxItem, IncomingTransaction, OutboxEntry, Recorded};
use bridgekit::store::{
    GhostRecord, LoginRecord, MessageMapping, Portal, PortalKey, PortalLogin, Queues,
    ReactionMapping, RoomProfile, SledStore, Store, StoreError, StoreStats, Transfer, UserRecord,
};
use bridgekit::{Bridge, BridgeContext, BridgeError, MatrixMessage, Outgoing, TxnIds};
use common::{Capture, Fault, Harness, SentLog, msg, push_status, wait_until};
use serde_json::{Value, json};

/// A sled store whose durable writes fail while `full` is set, as on a full disk.
#[derive(Debug)]
struct FullDisk {
    inner: SledStore,
    full: AtomicBool,
}

fn disk_full() -> StoreError {
    StoreError::Flush("No space left on device (os error 28)".into())
}

#[async_trait]
impl Store for FullDisk {
    fn backend(&self) -> &'static str {
        "sled (full disk)"
    }
    async fn insert_message(&self, m: &MessageMapping) -> Result<(), StoreError> {
        self.inner.insert_message(m).await
    }
    async fn message_by_event(&self, e: &EventId) -> Result<Option<MessageMapping>, StoreError> {
        self.inner.message_by_event(e).await
    }
    async fn message_by_remote(
        &self,
        r: &RoomId,
        id: &bridgekit::MessageId,
        part: &bridgekit::PartId,
    ) -> Result<Option<MessageMapping>, StoreError> {
        self.inner.message_by_remote(r, id, part).await
    }
    async fn message_parts(
        &self,
        r: &RoomId,
        id: &bridgekit::MessageId,
    ) -> Result<Vec<MessageMapping>, StoreError> {
        self.inner.message_parts(r, id).await
    }
    async fn delete_message(&self, e: &EventId) -> Result<Option<MessageMapping>, StoreError> {
        self.inner.delete_message(e).await
    }
    async fn insert_reaction(&self, r: &ReactionMapping) -> Result<(), StoreError> {
        self.inner.insert_reaction(r).await
    }
    async fn reaction(
        &self,
        r: &RoomId,
        t: &bridgekit::MessageId,
        s: &UserId,
        k: &str,
    ) -> Result<Option<ReactionMapping>, StoreError> {
        self.inner.reaction(r, t, s, k).await
    }
    async fn reaction_by_event(&self, e: &EventId) -> Result<Option<ReactionMapping>, StoreError> {
        self.inner.reaction_by_event(e).await
    }
    async fn delete_reaction(&self, e: &EventId) -> Result<Option<ReactionMapping>, StoreError> {
        self.inner.delete_reaction(e).await
    }
    async fn put_portal(&self, p: &Portal) -> Result<(), StoreError> {
        self.inner.put_portal(p).await
    }
    async fn portal_by_key(&self, k: &PortalKey) -> Result<Option<Portal>, StoreError> {
        self.inner.portal_by_key(k).await
    }
    async fn portal_by_room(&self, r: &RoomId) -> Result<Option<Portal>, StoreError> {
        self.inner.portal_by_room(r).await
    }
    async fn delete_portal(&self, k: &PortalKey) -> Result<Option<Portal>, StoreError> {
        self.inner.delete_portal(k).await
    }
    async fn portals(&self) -> Result<Vec<Portal>, StoreError> {
        self.inner.portals().await
    }
    async fn ghost(&self, u: &UserId) -> Result<GhostRecord, StoreError> {
        self.inner.ghost(u).await
    }
    async fn update_ghost(
        &self,
        u: &UserId,
        change: &(dyn for<'r> Fn(&'r mut GhostRecord) + Send + Sync),
    ) -> Result<GhostRecord, StoreError> {
        self.inner.update_ghost(u, change).await
    }
    async fn ghost_by_remote(
        &self,
        id: &bridgekit::RemoteUserId,
    ) -> Result<Option<(OwnedUserId, GhostRecord)>, StoreError> {
        self.inner.ghost_by_remote(id).await
    }
    async fn set_joined(&self, u: &UserId, r: &RoomId, j: bool) -> Result<(), StoreError> {
        self.inner.set_joined(u, r, j).await
    }
    async fn is_joined(&self, u: &UserId, r: &RoomId) -> Result<bool, StoreError> {
        self.inner.is_joined(u, r).await
    }
    async fn joined_rooms(&self, u: &UserId) -> Result<Vec<OwnedRoomId>, StoreError> {
        self.inner.joined_rooms(u).await
    }
    async fn room_profile(&self, u: &UserId, r: &RoomId) -> Result<RoomProfile, StoreError> {
        self.inner.room_profile(u, r).await
    }
    async fn set_room_profile(
        &self,
        u: &UserId,
        r: &RoomId,
        p: &RoomProfile,
    ) -> Result<(), StoreError> {
        self.inner.set_room_profile(u, r, p).await
    }
    async fn user(&self, u: &UserId) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user(u).await
    }
    async fn put_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.inner.put_user(u).await
    }
    async fn put_login(&self, l: &LoginRecord) -> Result<(), StoreError> {
        self.inner.put_login(l).await
    }
    async fn login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        self.inner.login(id).await
    }
    async fn logins_of(&self, u: &UserId) -> Result<Vec<LoginRecord>, StoreError> {
        self.inner.logins_of(u).await
    }
    async fn all_logins(&self) -> Result<Vec<LoginRecord>, StoreError> {
        self.inner.all_logins().await
    }
    async fn delete_login(&self, id: &LoginId) -> Result<Option<LoginRecord>, StoreError> {
        self.inner.delete_login(id).await
    }
    async fn put_portal_login(&self, l: &PortalLogin) -> Result<(), StoreError> {
        self.inner.put_portal_login(l).await
    }
    async fn remove_portal_login(&self, p: &PortalKey, id: &LoginId) -> Result<(), StoreError> {
        self.inner.remove_portal_login(p, id).await
    }
    async fn portal_logins(&self, p: &PortalKey) -> Result<Vec<PortalLogin>, StoreError> {
        self.inner.portal_logins(p).await
    }
    async fn login_portals(&self, id: &LoginId) -> Result<Vec<PortalLogin>, StoreError> {
        self.inner.login_portals(id).await
    }
    async fn value(&self, ns: &str, k: &str) -> Result<Option<Value>, StoreError> {
        self.inner.value(ns, k).await
    }
    async fn set_value(&self, ns: &str, k: &str, v: Option<&Value>) -> Result<(), StoreError> {
        self.inner.set_value(ns, k, v).await
    }
}

#[async_trait]
impl Queues for FullDisk {
    async fn record_transactions(
        &self,
        txns: &[IncomingTransaction],
    ) -> Result<Vec<Recorded>, StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        self.inner.record_transactions(txns).await
    }
    async fn outbox_push(&self, entry: &OutboxEntry) -> Result<u64, StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        self.inner.outbox_push(entry).await
    }
    async fn next_boot(&self) -> Result<u64, StoreError> {
        self.inner.next_boot().await
    }
    async fn pending_items(&self) -> Result<Vec<(u64, InboxItem)>, StoreError> {
        self.inner.pending_items().await
    }
    async fn complete_item(&self, seq: u64) -> Result<(), StoreError> {
        self.inner.complete_item(seq).await
    }
    async fn prune_transaction_records(&self, keep: u64) -> Result<u64, StoreError> {
        self.inner.prune_transaction_records(keep).await
    }
    async fn outbox_pending(&self) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.inner.outbox_pending().await
    }
    async fn outbox_replace(&self, seq: u64, entry: &OutboxEntry) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        self.inner.outbox_replace(seq, entry).await
    }
    async fn outbox_complete(
        &self,
        seq: u64,
        m: Option<&MessageMapping>,
    ) -> Result<(), StoreError> {
        self.inner.outbox_complete(seq, m).await
    }
    async fn remote_push(&self, item: &bridgekit::store::RemoteItem) -> Result<u64, StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        self.inner.remote_push(item).await
    }
    async fn remote_pending(&self) -> Result<Vec<(u64, bridgekit::store::RemoteItem)>, StoreError> {
        self.inner.remote_pending().await
    }
    async fn remote_complete(&self, seq: u64) -> Result<(), StoreError> {
        self.inner.remote_complete(seq).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}

#[async_trait]
impl Transfer for FullDisk {
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.inner.is_empty().await
    }
    async fn export(&self, sink: &mut dyn RecordSink) -> Result<(), StoreError> {
        self.inner.export(sink).await
    }
    async fn import(&self, records: &[Record]) -> Result<(), StoreError> {
        self.inner.import(records).await
    }
}

#[async_trait]
impl bridgekit::store::CryptoState for FullDisk {
    async fn crypto_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.crypto_entries().await
    }
    async fn apply_crypto(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(disk_full());
        }
        self.inner.apply_crypto(puts, deletes).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledgements_and_loses_nothing() {
    let h = Harness::new("", None).await;
    let store = Arc::new(FullDisk {
        inner: SledStore::open(&h.dir.path().join("faulty-store"), 4 << 20).unwrap(),
        full: AtomicBool::new(false),
    });
    let bridge = Capture::default();
    let running = h.run_with_store(bridge.clone(), store.clone()).await;
    let a = "@alice:localhost";
    assert_eq!(
        h.push("1", &json!({"events": [msg("!r:localhost", "$1", a, "1")]}))
            .await,
        200
    );

    store.full.store(true, Ordering::SeqCst);
    let second = json!({"events": [msg("!r:localhost", "$2", a, "2")]});
    let (status, body) = push_status(&h, "2", &second).await;
    assert_eq!(
        status, 500,
        "not acknowledged, so the homeserver keeps it: {body}"
    );
    assert_eq!(body["errcode"], "M_UNKNOWN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "says why: {body}"
    );
    // Sends the bridge asks for fail too, rather than being dropped silently.
    let ctx = bridge.ctx.get().unwrap().clone();
    let room = RoomId::parse("!r:localhost").unwrap();
    let content = RoomMessageEventContent::text_plain("from the bridge");
    let queued = ctx
        .bot()
        .queue(Outgoing::message(&room, &content).unwrap())
        .await;
    assert!(queued.is_err(), "a send that cannot be stored is refused");

    // The disk has room again: the homeserver's retry goes through, once.
    store.full.store(false, Ordering::SeqCst);
    assert_eq!(h.push("2", &second).await, 200);
    assert_eq!(h.push("2", &second).await, 200);
    wait_until("both events", 5, || bridge.seen.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = bridge.event_ids();
    assert_eq!(seen, ["$1", "$2"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_input_is_handled_and_nonsense_is_skipped_alone() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let a = "@alice:localhost";
    let long = "ü".repeat(500_000);
    let txn = json!({"events": [
        // Room version 12: room IDs without a server part.
        msg("!qOtt0fYDVrTe4lrMtZhkz3P3kXWOeuBsW3u3o2Aa3B4", "$v12", a, "v12 room"),
        msg("!r:localhost", "$uni", a, "emoji 🦀, RTL \u{202e}txet, NUL \u{0} and 例え"),
        // A server name that is not a hostname makes the sender invalid: skipped alone.
        msg("!r:localhost", "$bad-server", "@ünïcödé:例え.テスト", "x"),
        msg("!r:localhost", "$long", a, &long),
        {"event_id": "$unknown", "room_id": "!r:localhost", "sender": a, "type": "org.example.custom",
         "origin_server_ts": 1, "content": {"anything": [1, {"nested": null}]}},
        {"event_id": "$state", "room_id": "!r:localhost", "sender": a, "type": "org.example.state",
         "state_key": "ẞ/../\u{0}weird key", "origin_server_ts": 1, "content": {}},
        {"event_id": "$empty-key", "room_id": "!r:localhost", "sender": a, "type": "m.room.topic",
         "state_key": "", "origin_server_ts": 1, "content": {"topic": "🦀"}},
        // Nonsense: each fails alone.
        {"event_id": "$no-room", "sender": a, "type": "m.room.message", "content": {}},
        {"event_id": 42, "room_id": [], "type": null},
        "just a string",
        msg("!r:localhost", "$after", a, "after the nonsense"),
    ]});
    assert_eq!(h.push("1", &txn).await, 200);
    wait_until("the valid events", 10, || {
        bridge
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, e, _)| e == "$after")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = bridge.event_ids();
    for id in [
        "$v12",
        "$uni",
        "$long",
        "$unknown",
        "$state",
        "$empty-key",
        "$after",
    ] {
        assert!(
            seen.contains(&id.to_owned()),
            "{id} reached the bridge: {seen:?}"
        );
    }
    for id in ["$no-room", "$bad-server"] {
        assert!(!seen.iter().any(|e| e == id), "{id} skipped: {seen:?}");
    }
    let long_seen = bridge
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|(_, e, _)| e == "$long")
        .unwrap()
        .2
        .clone();
    assert_eq!(long_seen.len(), long.len(), "a 1 MB body arrives whole");
    running.stop().await;
}

/// Answers every message with one ghost send, with a txnId derived from the event (as a
/// real bridge does, so a repeated handler run sends nothing new).
struct Answering;

#[async_trait]
impl Bridge for Answering {
    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        m: MatrixMessage,
    ) -> Result<bridgekit::Sent, BridgeError> {
        let o = &m.origin;
        let content = RoomMessageEventContent::text_plain(m.content.body());
        let txn = TxnIds::derived(&[o.room_id.as_str(), o.event_id.as_str()]);
        ctx.ghost(&bridgekit::RemoteUserId::from_static("answer"))
            .submit(Outgoing::message(&o.room_id, &content)?.txn_id(txn))
            .await?;
        Ok(bridgekit::Sent::pending())
    }
}

/// A small deterministic generator, so a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_send_faults_still_deliver_each_answer_once_in_room_order() {
    let h = Harness::new(", request_timeout_secs: 1", None).await;
    let running = h.run(Answering).await;
    let mut rng = Lcg(std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7));
    let (rooms, per_room) = (5, 30);
    let a = "@alice:localhost";
    let mut n = 0;
    for t in 0..per_room / 3 {
        // Faults for the next sends: 500/502/503, a 429 with Retry-After, an answer slower
        // than the client's timeout, or none.
        let faults: Vec<Fault> = (0..8)
            .filter_map(|_| match rng.below(10) {
                0 => Some(Fault::Status(500)),
                1 => Some(Fault::Status(502)),
                2 => Some(Fault::Status(503)),
                3 => Some(Fault::RateLimit { secs: 1 }),
                4 => Some(Fault::Delay(Duration::from_millis(1500))),
                _ => None,
            })
            .collect();
        h.hs.fault(faults);
        // Now and then the homeserver goes away for a moment (connections refused).
        if rng.below(4) == 0 {
            h.hs.down().await;
            tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
            h.hs.up();
        }
        let events: Vec<Value> = (0..3 * rooms)
            .map(|i| {
                let body = format!("{}:{}", i % rooms, 3 * t + i / rooms);
                n += 1;
                msg(
                    &format!("!c{}:localhost", i % rooms),
                    &format!("$c{n}"),
                    a,
                    &body,
                )
            })
            .collect();
        assert_eq!(
            h.push(&t.to_string(), &json!({"events": events})).await,
            200
        );
    }
    wait_until("every answer", 90, || {
        h.hs.sends().len() >= rooms * per_room
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // let late duplicates show
    let sent = h.hs.sends();
    assert_eq!(sent.len(), rooms * per_room, "each answer exactly once");
    for r in 0..rooms {
        let bodies: Vec<&str> = sent
            .iter()
            .filter(|(room, _, _)| room == &format!("!c{r}:localhost"))
            .map(|(_, _, b)| b.as_str())
            .collect();
        let expected: Vec<String> = (0..per_room).map(|i| format!("{r}:{i}")).collect();
        assert_eq!(bodies, expected, "room {r} in order");
    }
    running.stop().await;
}
