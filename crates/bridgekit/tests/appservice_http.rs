//! The framework over real HTTP with a fake homeserver and a bridge that records what it is
//! handed. These check what the echo bridge's idempotent sends would hide: that each event
//! reaches the bridge exactly once and in order.

mod common;

use std::time::Duration;

use common::{Capture, Harness, msg, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_bridge_once_in_room_order() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    let a = "@alice:localhost";
    let txn = json!({"events": [
        msg("!a:localhost", "$a1", a, "1"), msg("!b:localhost", "$b1", a, "1"),
        msg("!a:localhost", "$a2", a, "fail"), msg("!a:localhost", "$a3", a, "3"),
        msg("!a:localhost", "$own", "@_t_ghost:localhost", "a ghost's own echo"),
        msg("!a:localhost", "$bot", "@tbot:localhost", "the bot's own echo"),
    ]});
    assert_eq!(
        h.push("7", &txn).await,
        200,
        "a failing handler never fails the transaction"
    );
    let (r1, r2, r3) = tokio::join!(h.push("7", &txn), h.push("7", &txn), h.push("7", &txn));
    assert_eq!((r1, r2, r3), (200, 200, 200));
    let reused = json!({"events": [msg("!a:localhost", "$a4", a, "4")]});
    assert_eq!(h.push("7", &reused).await, 200);
    wait_until("all events", 5, || bridge.seen.lock().unwrap().len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let any duplicate show up
    let seen = bridge.seen.lock().unwrap().clone();
    let in_a: Vec<&str> = seen
        .iter()
        .filter(|(r, _, _)| r == "!a:localhost")
        .map(|(_, e, _)| e.as_str())
        .collect();
    assert_eq!(
        in_a,
        ["$a1", "$a2", "$a3", "$a4"],
        "once each, in order, own echoes filtered: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|(_, e, _)| e == "$b1").count(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_accepts_invites() {
    let h = Harness::new("", None).await;
    let running = h.run(Capture::default()).await;
    let invite = json!({"events": [{
        "event_id": "$inv", "room_id": "!r:localhost", "sender": "@alice:localhost",
        "type": "m.room.member", "state_key": "@tbot:localhost", "origin_server_ts": 1,
        "content": {"membership": "invite"},
    }]});
    assert_eq!(h.push("1", &invite).await, 200);
    wait_until("the bot's join", 5, || !h.hs.joins().is_empty()).await;
    assert_eq!(h.hs.joins().as_slice(), ["!r:localhost"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_failures_explain_the_fix() {
    let unknown_token = json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown access token"});
    let h = Harness::new("", Some((401, unknown_token))).await;
    let err = h
        .run(Capture::default())
        .await
        .task
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("app_service_config_files"), "{err}");

    let bad_hs_token =
        json!({"errcode": "M_BAD_STATUS", "status": 403, "body": "{}", "error": "x"});
    let h = Harness::new("", Some((502, bad_hs_token))).await;
    let err = h
        .run(Capture::default())
        .await
        .task
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("hs_token does not match"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_are_not_read_without_auth() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    // Just over the cap, as valid JSON so only the size can be the problem.
    let cap = bridgekit::appservice::MAX_BODY_BYTES;
    let mut body = String::with_capacity(cap + 64);
    body.push_str(r#"{"events":[],"pad":""#);
    body.push_str(&"x".repeat(cap));
    body.push_str(r#""}"#);
    let url = format!("{}/_matrix/app/v1/transactions/big", h.as_url);
    let http = reqwest::Client::new();
    // The largest transaction Synapse sends (100 events of 64 KiB, 100 ephemeral events and
    // 100 to-device messages of 64 KiB) is well inside the cap.
    let filler = "y".repeat(63 * 1024);
    let event = |i: usize| {
        serde_json::json!({
            "type": "m.room.message", "room_id": "!big:example.org", "sender": "@u:example.org",
            "event_id": format!("$big{i}"), "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": filler},
        })
    };
    let largest = serde_json::json!({
        "events": (0..100).map(event).collect::<Vec<_>>(),
        "ephemeral": (0..100).map(|_| serde_json::json!({"type": "m.typing", "room_id": "!big:example.org", "content": {"pad": filler}})).collect::<Vec<_>>(),
        "to_device": (0..100).map(|_| serde_json::json!({"type": "m.x", "sender": "@u:example.org", "to_user_id": "@bot:example.org", "to_device_id": "D", "content": {"pad": filler}})).collect::<Vec<_>>(),
    })
    .to_string();
    assert!(largest.len() > 19_000_000 && largest.len() < cap);
    let r = http
        .put(format!("{}/_matrix/app/v1/transactions/largest", h.as_url))
        .bearer_auth(&h.hs_token)
        .body(largest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .put(&url)
        .bearer_auth(&h.hs_token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["errcode"], "M_TOO_LARGE");
    // A wrong token is refused before the body is read: 403, not 413.
    let r = http.put(&url).bearer_auth("wrong").body(body).send().await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 403);
    } // (the server may close the connection before the upload ends: also a refusal)
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_before_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new("", None).await;
    let running = h.run(Capture::default()).await;
    let addr = h.as_url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"PUT /_matrix/app/v1/transactions/1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // ... and never finishes the headers. The server must give up on its own.
    let started = std::time::Instant::now();
    // Meanwhile the listener serves others.
    assert_eq!(h.push("2", &json!({"events": []})).await, 200);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed suspiciously early: {:?}",
        started.elapsed()
    );
    running.stop().await;
}
