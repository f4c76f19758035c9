//! `/metrics` reports what happened, exactly (this file is its own process, so the global
//! recorder sees only this test).

mod common;

use bridgekit::ruma::RoomId;
use bridgekit::ruma::events::room::message::RoomMessageEventContent;
use common::{Capture, Harness, metric as value, msg, scrape_metrics, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_transactions_events_handlers_and_sends() {
    let h = Harness::new("", None).await;
    let bridge = Capture::default();
    let running = h.run(bridge.clone()).await;
    wait_until("start", 10, || bridge.ctx.get().is_some()).await;
    let ctx = bridge.ctx.get().unwrap().clone();

    let a = "@alice:localhost";
    let txn = json!({
        "events": [msg("!r:localhost", "$1", a, "one"), msg("!r:localhost", "$2", a, "fail"), {"type": "broken"}],
        "ephemeral": [{"type": "m.typing", "room_id": "!r:localhost", "content": {"user_ids": []}}],
    });
    assert_eq!(h.push("1", &txn).await, 200);
    assert_eq!(h.push("1", &txn).await, 200);
    let wrong = reqwest::Client::new()
        .put(format!("{}/_matrix/app/v1/transactions/2", h.as_url))
        .bearer_auth("wrong")
        .json(&txn)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    wait_until("both events handled", 5, || {
        bridge.seen.lock().unwrap().len() == 2
    })
    .await;
    let room = RoomId::parse("!r:localhost").unwrap();
    ctx.ghost(&bridgekit::RemoteUserId::from_static("g"))
        .send(&room, &RoomMessageEventContent::text_plain("out"))
        .await
        .unwrap();

    let text = scrape_metrics(&h.as_url).await;
    assert_eq!(
        value(&text, r#"bridgekit_transactions_total{outcome="new"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"bridgekit_transactions_total{outcome="duplicate"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"bridgekit_transactions_total{outcome="unauthorized"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"bridgekit_events_received_total{kind="timeline"}"#),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"bridgekit_events_received_total{kind="ephemeral"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "bridgekit_events_skipped_total"), 1.0);
    assert_eq!(
        value(&text, r#"bridgekit_handler_errors_total{kind="timeline"}"#),
        1.0,
        "the \"fail\" event"
    );
    assert_eq!(
        value(&text, r#"bridgekit_handler_seconds_count{kind="timeline"}"#),
        2.0
    );
    assert_eq!(
        value(&text, "bridgekit_outbox_sent_total"),
        2.0,
        "the test's send and the bot's notice about the failed event"
    );
    assert_eq!(value(&text, "bridgekit_outbox_depth"), 0.0);
    assert_eq!(value(&text, "bridgekit_outbox_oldest_seconds"), 0.0);
    assert!(value(&text, "bridgekit_homeserver_request_seconds_count") >= 1.0);
    assert!(value(&text, "bridgekit_store_bytes") > 0.0);
    let registration = bridgekit::Registration::load(&h.config.appservice.registration).unwrap();
    assert!(
        !text.contains(&registration.hs_token) && !text.contains(&registration.as_token),
        "no token in the metrics"
    );
    drop(ctx);
    running.stop().await;
}
