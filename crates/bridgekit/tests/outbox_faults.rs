//! Fault injection on the send path: the fake homeserver answers 500s, 429 with
//! `Retry-After`, refuses connections for a while, or answers too late; the bridge is stopped
//! with sends still queued. Every check ends the same way: each event arrived exactly once,
//! and in the order it was queued within its room.

mod common;

use std::time::{Duration, Instant};

use bridgekit::ruma::events::room::message::RoomMessageEventContent;
use bridgekit::ruma::{OwnedRoomId, RoomId};
use bridgekit::{BridgeContext, Outgoing, PendingSend};
use common::{Capture, Fault, Harness, SentLog, outbox_depth, wait_for_empty_outbox, wait_until};

fn room(name: &str) -> OwnedRoomId {
    RoomId::parse(format!("!{name}:localhost")).unwrap()
}

/// Queues `n` numbered messages per room from one ghost per room, alternating rooms.
async fn queue(ctx: &BridgeContext, rooms: &[OwnedRoomId], n: usize) -> Vec<PendingSend> {
    let mut pending = Vec::new();
    for i in 0..n {
        for (r, room) in rooms.iter().enumerate() {
            let content = RoomMessageEventContent::text_plain(format!("{r}:{i}"));
            let outgoing = Outgoing::message(room, &content).unwrap();
            pending.push(
                ctx.ghost(&bridgekit::RemoteUserId::new(format!("g{r}")).unwrap())
                    .queue(outgoing)
                    .await
                    .unwrap(),
            );
        }
    }
    pending
}

/// Exactly once per message, and in order within each room.
fn assert_once_in_order(sent: &[(String, String, String)], rooms: &[OwnedRoomId], n: usize) {
    for (r, room) in rooms.iter().enumerate() {
        let bodies: Vec<&str> = sent
            .iter()
            .filter(|(rm, _, _)| rm == room.as_str())
            .map(|(_, _, b)| b.as_str())
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("{r}:{i}")).collect();
        assert_eq!(bodies, expected, "room {room}: {sent:?}");
    }
}

async fn ctx_of(bridge: &Capture) -> BridgeContext {
    wait_until("the bridge to start", 10, || bridge.ctx.get().is_some()).await;
    bridge.ctx.get().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_every_event_is_in() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    h.hs.fault([Fault::Status(500), Fault::Status(502), Fault::Status(503)]);
    let rooms = [room("a"), room("b")];
    for p in queue(&ctx, &rooms, 5).await {
        assert!(p.event_id().await.unwrap().is_some());
    }
    assert_once_in_order(&h.hs.sends(), &rooms, 5);
    assert_eq!(outbox_depth(&ctx).await, 0, "done sends leave the outbox");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_wait_for_retry_after_before_the_body_field() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    h.hs.fault([Fault::RateLimit { secs: 1 }]);
    let rooms = [room("a")];
    let started = Instant::now();
    for p in queue(&ctx, &rooms, 3).await {
        p.event_id().await.unwrap();
    }
    let attempts = h.hs.send_attempts();
    let gap = attempts[1] - attempts[0];
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}: Retry-After (1 s) must win over retry_after_ms (1 ms)"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_once_in_order(&h.hs.sends(), &rooms, 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_homeserver_only_delays_sends() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    h.hs.down().await;
    let rooms = [room("a"), room("b")];
    let pending = queue(&ctx, &rooms, 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.hs.sends().is_empty());
    assert_eq!(outbox_depth(&ctx).await, 8, "queued sends wait on disk");
    let metrics = common::scrape_metrics(&h.as_url).await;
    let gauge = |name: &str| common::metric(&metrics, name);
    assert_eq!(gauge("bridgekit_outbox_depth"), 8.0);
    let oldest = gauge("bridgekit_outbox_oldest_seconds");
    assert!(
        (1.9..10.0).contains(&oldest),
        "oldest send waited {oldest} s"
    );
    h.hs.up();
    for p in pending {
        p.event_id().await.unwrap();
    }
    assert_once_in_order(&h.hs.sends(), &rooms, 4);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_send_is_retried_with_the_same_transaction_id() {
    let h = Harness::new(", request_timeout_secs: 1", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    h.hs.fault([Fault::Delay(Duration::from_millis(2500))]);
    let rooms = [room("a")];
    for p in queue(&ctx, &rooms, 3).await {
        p.event_id().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2600)).await; // the late first attempt completes too
    assert!(
        h.hs.send_attempts().len() >= 4,
        "the first send was attempted twice"
    );
    assert_once_in_order(&h.hs.sends(), &rooms, 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_queued_when_the_bridge_stops_go_out_after_restart() {
    let h = Harness::new("", None).await;
    let rooms = [room("a"), room("b")];
    {
        let bridge = Capture::default();
        let running = h.run(bridge.clone()).await;
        let ctx = ctx_of(&bridge).await;
        h.hs.down().await;
        let pending = queue(&ctx, &rooms, 3).await;
        assert_eq!(outbox_depth(&ctx).await, 6);
        drop(ctx);
        running.stop().await;
        for p in pending {
            assert!(matches!(
                p.event_id().await,
                Err(bridgekit::ClientError::Stopped)
            ));
        }
    }
    assert!(h.hs.sends().is_empty());
    h.hs.up();
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    wait_until("the resumed sends", 20, || h.hs.sends().len() >= 6).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_once_in_order(&h.hs.sends(), &rooms, 3);
    wait_for_empty_outbox(&ctx, 5).await;
    drop(ctx);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_room_does_not_hold_up_the_others() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    h.hs.block_room("!a:localhost", true);
    let rooms = [room("a"), room("b")];
    let pending = queue(&ctx, &rooms, 3).await;
    wait_until("room b's sends", 10, || h.hs.sends().len() == 3).await;
    assert!(
        h.hs.sends().iter().all(|(r, _, _)| r == "!b:localhost"),
        "only b got through: {:?}",
        h.hs.sends()
    );
    h.hs.block_room("!a:localhost", false);
    for p in pending {
        p.event_id().await.unwrap();
    }
    assert_once_in_order(&h.hs.sends(), &rooms, 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_sent_only_when_they_change() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    let ghost = ctx.ghost(&bridgekit::RemoteUserId::from_static("g"));
    let writes = || h.hs.profile_writes();
    ghost.set_displayname("G").await.unwrap();
    ghost.set_displayname("G").await.unwrap();
    assert_eq!(writes(), 1);
    ghost.set_displayname("G2").await.unwrap();
    let avatar: bridgekit::ruma::OwnedMxcUri = "mxc://localhost/abc".into();
    ghost.set_avatar(&avatar).await.unwrap();
    ghost.set_avatar(&avatar).await.unwrap();
    assert_eq!(writes(), 3);
    drop(ctx);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_made_while_handling_an_event_waits_in_the_inbox_not_the_outbox() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    h.hs.down().await;
    let txn = serde_json::json!({"events": [common::msg("!a:localhost", "$src1", "@alice:localhost", "echo: back")]});
    assert_eq!(h.push("1", &txn).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = ctx.queue_stats().await.unwrap();
    assert_eq!(
        stats.outbox_depth, 0,
        "a derived-txnId send in a handler skips the outbox"
    );
    assert_eq!(
        stats.inbox_depth, 1,
        "its event stays in the inbox until the send is in"
    );
    h.hs.up();
    wait_until("the answer arrives", 30, || h.hs.sends().len() == 1).await;
    let sent = h.hs.sends();
    assert_eq!(sent[0].0, "!a:localhost");
    assert_eq!(sent[0].2, "back");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ctx.queue_stats().await.unwrap().inbox_depth != 0 {
        assert!(Instant::now() < deadline, "the event never left the inbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghost_the_homeserver_does_not_see_in_the_room_yet_is_retried_until_it_does() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    let ghost = ctx
        .ghost(&bridgekit::RemoteUserId::from_static("g0"))
        .user_id()
        .to_string();
    h.hs.refuse_not_in_room(&ghost, true);
    let rooms = [room("a")];
    let pending = queue(&ctx, &rooms, 3).await;
    // Longer than the quick re-join retries inside one attempt (~1.5 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(h.hs.sends().is_empty(), "refused while not in the room");
    h.hs.refuse_not_in_room(&ghost, false);
    for p in pending {
        assert!(p.event_id().await.unwrap().is_some());
    }
    assert_once_in_order(&h.hs.sends(), &rooms, 3);
    let nudges = h.hs.dummy_events();
    assert!(
        nudges >= 5,
        "each refusal merges the room's extremities ({nudges})"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_given_up_at_the_deadline_is_told_to_the_caller_and_the_room() {
    let h = Harness::with_config("", "bridge: {send_deadline_secs: 1}", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let ctx = ctx_of(&bridge).await;
    let ghost = ctx.ghost(&bridgekit::RemoteUserId::from_static("g0"));
    h.hs.refuse_not_in_room(ghost.user_id().as_str(), true);
    let content = RoomMessageEventContent::text_plain("waited for");
    let waited = ghost.queue(Outgoing::message(&room("a"), &content).unwrap());
    let error = waited.await.unwrap().event_id().await.unwrap_err();
    assert!(error.is_not_in_room(), "{error}");
    let content = RoomMessageEventContent::text_plain("queued and left");
    drop(
        ghost
            .queue(Outgoing::message(&room("b"), &content).unwrap())
            .await
            .unwrap(),
    );
    wait_until("the room to hear of the given-up send", 20, || {
        h.hs.sends().iter().any(|(room, sender, body)| {
            room == "!b:localhost" && sender == "@tbot:localhost" && body.contains("given up")
        })
    })
    .await;
    let waited_notice =
        h.hs.sends()
            .iter()
            .any(|(room, _, _)| room == "!a:localhost");
    assert!(
        !waited_notice,
        "a caller that waits is told instead: {:?}",
        h.hs.sends()
    );
    wait_for_empty_outbox(&ctx, 10).await;
    running.stop().await;
}
