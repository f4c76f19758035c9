//! Users hear what happened to their events: a notice in the room when a handler fails, and
//! `com.beeper.message_send_status` events (when enabled) for success, failure and
//! unsupported capabilities.

mod common;

use bridgekit::{Bridge, BridgeContext, BridgeError, MatrixMessage, async_trait};
use common::{Harness, SentLog, msg, wait_until};
use serde_json::{Value, json};

/// Handles messages only (no reactions), and fails on "fail".
struct MessagesOnly;

#[async_trait]
impl Bridge for MessagesOnly {
    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        m: MatrixMessage,
    ) -> Result<bridgekit::Sent, BridgeError> {
        let _ = ctx;
        if m.content.body() == "fail" {
            return Err("the remote network said no".into());
        }
        Ok(bridgekit::Sent::message(bridgekit::MessageId::new(
            m.origin.event_id.as_str(),
        )?))
    }
}

fn statuses(events: &[(String, Value)]) -> Vec<(String, String, Option<String>)> {
    events
        .iter()
        .filter(|(t, _)| t == "com.beeper.message_send_status")
        .map(|(_, c)| {
            (
                c["relates_to"]["event_id"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["message"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_get_a_notice_and_every_outcome_a_status_event() {
    let h = Harness::with_config("", "bridge: {message_status: true}", None).await;
    let running = h.run(MessagesOnly).await;
    let a = "@alice:localhost";
    let reaction = json!({
        "event_id": "$react", "room_id": "!r:localhost", "sender": a, "type": "m.reaction",
        "origin_server_ts": 1,
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$ok", "key": "👍"}},
    });
    let txn = json!({"events": [
        msg("!r:localhost", "$ok", a, "fine"),
        msg("!r:localhost", "$bad", a, "fail"),
        reaction,
    ]});
    assert_eq!(h.push("1", &txn).await, 200);
    wait_until("four reports", 10, || h.hs.sent_events().len() >= 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = h.hs.sent_events();
    let mut statuses = statuses(&events);
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (
                "$bad".into(),
                "FAIL_RETRIABLE".into(),
                Some("the remote network said no".into())
            ),
            ("$ok".into(), "SUCCESS".into(), None),
            (
                "$react".into(),
                "FAIL_PERMANENT".into(),
                Some("reactions are not supported by this bridge".into())
            ),
        ]
    );
    let notices: Vec<&Value> = events
        .iter()
        .filter(|(t, c)| t == "m.room.message" && c["msgtype"] == "m.notice")
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "a notice for the failure only, not for unsupported: {events:#?}"
    );
    assert_eq!(
        notices[0]["body"],
        "⚠️ Not bridged: the remote network said no"
    );
    assert_eq!(
        notices[0]["m.relates_to"]["m.in_reply_to"]["event_id"],
        "$bad"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_a_room_that_is_not_a_portal_are_answered_by_the_bot() {
    let h = Harness::new("", None).await;
    let running = h.run(MessagesOnly).await;
    let a = "@alice:localhost";
    let txn = json!({"events": [
        msg("!m:localhost", "$c1", a, "!ping"),
        msg("!m:localhost", "$c2", a, "!nope"),
        msg("!m:localhost", "$c3", a, "!help"),
    ]});
    assert_eq!(h.push("1", &txn).await, 200);
    wait_until("three answers", 10, || h.hs.sent_events().len() >= 3).await;
    let bodies: Vec<String> =
        h.hs.sent_events()
            .iter()
            .map(|(_, c)| c["body"].as_str().unwrap_or("").to_owned())
            .collect();
    assert!(
        bodies[0].starts_with("pong: store (sled) answered"),
        "{bodies:?}"
    );
    assert_eq!(bodies[1], "!nope: unknown command; !help lists them");
    assert!(
        bodies[2].contains("!version: the bridge's version"),
        "{bodies:?}"
    );
    running.stop().await;
}
