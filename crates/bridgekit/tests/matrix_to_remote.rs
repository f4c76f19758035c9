//! Matrix → remote delivery and the books the framework keeps: a remote side that is down
//! for a while gets every message once and in order (also across a restart in the middle),
//! what a handler returns is recorded as the mapping, rooms are adopted as portals, and the
//! network's echo of a bridged message is recognised by its transaction ID.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bridgekit::ruma::RoomId;
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, MatrixMessage, MatrixReaction, MatrixRedaction,
    MessageId, PartId, PortalKey, RemoteContent, RemoteEvent, RemoteMessage, RemoteUser,
    RemoteUserId, RetryLater, Sent, async_trait,
};
use common::{Harness, SentLog, msg, wait_until};
use serde_json::json;

/// A remote network in memory: it takes messages while up, and remembers what it took.
#[derive(Clone, Default)]
struct Network {
    down: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<String>>>,
    /// Echo each message back through `remote_event`, with the transaction ID, before the
    /// handler returns (as a fast network's event stream may).
    echo_first: bool,
    ctx: Arc<std::sync::OnceLock<BridgeContext>>,
}

impl Network {
    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

#[async_trait]
impl Bridge for Network {
    async fn start(&self, ctx: &BridgeContext) -> Result<(), BridgeError> {
        let _ = self.ctx.set(ctx.clone());
        Ok(())
    }

    async fn portal_for_room(
        &self,
        _: &BridgeContext,
        room_id: &RoomId,
    ) -> Result<Option<ChatId>, BridgeError> {
        Ok(Some(ChatId::new(format!("chat-{room_id}"))?))
    }

    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        m: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(RetryLater::new("the network is down").into());
        }
        let body = m.content.body().to_owned();
        let n = {
            let mut received = self.received.lock().unwrap();
            received.push(body.clone());
            received.len()
        };
        let id = MessageId::new(format!("net-{n}"))?;
        if self.echo_first {
            let echo = RemoteMessage::new(
                id.clone(),
                RemoteUser::new(RemoteUserId::new("alice-remote")?),
                RemoteContent::text(body),
            )
            .with_txn_id(m.txn_id());
            let portal = m.origin.portal.as_ref().expect("adopted").key.clone();
            ctx.apply_remote_event(&portal, RemoteEvent::Message(echo))
                .await?;
        }
        Ok(Sent::message(id))
    }

    async fn handle_reaction(
        &self,
        _: &BridgeContext,
        r: MatrixReaction,
    ) -> Result<(), BridgeError> {
        self.received
            .lock()
            .unwrap()
            .push(format!("react {} {}", r.target.remote_id, r.key));
        Ok(())
    }

    async fn handle_redaction(
        &self,
        _: &BridgeContext,
        _: MatrixRedaction,
    ) -> Result<(), BridgeError> {
        Ok(())
    }
}

/// Waits until every acknowledged event was handled.
async fn wait_for_empty_inbox(store: &dyn bridgekit::store::Backend) {
    for _ in 0..500 {
        if store.stats().await.unwrap().inbox_depth == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the inbox did not empty");
}

const ROOM: &str = "!r:localhost";
const ALICE: &str = "@alice:localhost";

fn messages(range: std::ops::Range<usize>) -> serde_json::Value {
    let events: Vec<_> = range
        .map(|n| msg(ROOM, &format!("$m{n}"), ALICE, &format!("message {n}")))
        .collect();
    json!({ "events": events })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_side_down_for_a_while_gets_every_message_once_in_order_across_a_restart() {
    let h = Harness::new("", None).await;
    let network = Network::default();
    network.down.store(true, Ordering::SeqCst);
    let store = bridgekit::store::open(&h.config.store.location)
        .await
        .unwrap();
    let running = h.run_with_store(network.clone(), store.clone()).await;
    assert_eq!(h.push("1", &messages(0..3)).await, 200);
    // Retried while down: nothing arrives, nothing is dropped.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(network.received().is_empty());
    assert_eq!(store.stats().await.unwrap().inbox_depth, 3);
    // The bridge stops in the middle of the retries: the events stay in the inbox.
    running.stop().await;
    assert_eq!(store.stats().await.unwrap().inbox_depth, 3);

    let running = h.run_with_store(network.clone(), store.clone()).await;
    assert_eq!(h.push("2", &messages(3..5)).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    network.down.store(false, Ordering::SeqCst);
    wait_until("every message on the network", 30, || {
        network.received().len() >= 5
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let expected: Vec<String> = (0..5).map(|n| format!("message {n}")).collect();
    assert_eq!(network.received(), expected, "once each, in order");
    wait_for_empty_inbox(&*store).await;
    // The framework kept the books: each event maps to what the network returned.
    for n in 0..5 {
        let event = bridgekit::ruma::EventId::parse(format!("$m{n}")).unwrap();
        let mapping = store.message_by_event(&event).await.unwrap().unwrap();
        assert_eq!(mapping.remote_id, format!("net-{}", n + 1).as_str());
        assert_eq!(mapping.sender.as_ref().map(|s| s.as_str()), Some(ALICE));
    }
    let room = RoomId::parse(ROOM).unwrap();
    let portal = store.portal_by_room(&room).await.unwrap().unwrap();
    assert_eq!(
        portal.key,
        PortalKey::new(ChatId::from_static("chat-!r:localhost"))
    );
    running.stop().await;
    assert_eq!(store.stats().await.unwrap().inbox_depth, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_limit_ends_in_a_notice_not_a_silent_drop() {
    let h = Harness::with_config("", "bridge: {handler_retry_secs: 1}", None).await;
    let network = Network::default();
    network.down.store(true, Ordering::SeqCst);
    let running = h.run(network.clone()).await;
    assert_eq!(h.push("1", &messages(0..1)).await, 200);
    wait_until("a notice about the message", 20, || {
        h.hs.sends().iter().any(|(room, sender, body)| {
            room == ROOM && sender == "@tbot:localhost" && body.contains("temporary failure")
        })
    })
    .await;
    assert!(network.received().is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_networks_echo_of_a_bridged_message_is_recognised_not_bridged_again() {
    let h = Harness::new("", None).await;
    let network = Network {
        echo_first: true,
        ..Network::default()
    };
    let store = bridgekit::store::open(&h.config.store.location)
        .await
        .unwrap();
    let running = h.run_with_store(network.clone(), store.clone()).await;
    assert_eq!(h.push("1", &messages(0..2)).await, 200);
    wait_until("both messages on the network", 10, || {
        network.received().len() == 2
    })
    .await;
    // A reaction to the first: its target is found through the recorded mapping, and the
    // reaction itself is recorded, so a later redaction finds it.
    let reaction = json!({"events": [{
        "event_id": "$react", "room_id": ROOM, "sender": ALICE, "type": "m.reaction",
        "origin_server_ts": 1,
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$m0", "key": "👍"}},
    }]});
    assert_eq!(h.push("2", &reaction).await, 200);
    wait_until("the reaction on the network", 10, || {
        network.received().len() == 3
    })
    .await;
    assert_eq!(network.received()[2], "react net-1 👍");
    let react = bridgekit::ruma::EventId::parse("$react").unwrap();
    wait_for_empty_inbox(&*store).await;
    assert!(store.reaction_by_event(&react).await.unwrap().is_some());
    let redaction = json!({"events": [{
        "event_id": "$unreact", "room_id": ROOM, "sender": ALICE, "type": "m.room.redaction",
        "origin_server_ts": 1, "redacts": "$react", "content": {"redacts": "$react"},
    }]});
    assert_eq!(h.push("3", &redaction).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    wait_for_empty_inbox(&*store).await;
    assert!(
        store.reaction_by_event(&react).await.unwrap().is_none(),
        "a redaction the network carried out is forgotten"
    );
    // The echoes carried the transaction IDs: nothing was sent back into the room.
    assert!(
        h.hs.sends().is_empty(),
        "the echo was bridged again: {:?}",
        h.hs.sends()
    );
    let room = RoomId::parse(ROOM).unwrap();
    let first = store
        .message_by_remote(&room, &MessageId::from_static("net-1"), &PartId::only())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.event_id.as_str(), "$m0");
    running.stop().await;
}
