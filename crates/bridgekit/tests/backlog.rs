//! A bridge that falls behind pushes back instead of filling memory: a transaction that
//! finds the backlog full waits for room, and is refused with 503 only if none comes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bridgekit::{Bridge, BridgeContext, BridgeError, MatrixMessage};
use common::{Harness, RunningBridge, msg, push_status, wait_until};
use serde_json::{Value, json};

/// Holds every message until released, so events pile up.
struct Stuck {
    released: tokio::sync::watch::Receiver<bool>,
    handled: Arc<AtomicUsize>,
}

#[async_trait]
impl Bridge for Stuck {
    async fn handle_message(
        &self,
        _: &BridgeContext,
        _: MatrixMessage,
    ) -> Result<bridgekit::Sent, BridgeError> {
        let _ = self.released.clone().wait_for(|r| *r).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(bridgekit::Sent::pending())
    }
}

/// The maximum backlog: bridgekit's `MAX_PENDING_EVENTS`.
const BACKLOG: usize = 2_000;

/// A bridge whose handlers wait for `release`, with its backlog filled up to [`BACKLOG`].
async fn stuck_with_full_backlog() -> (
    Harness,
    tokio::sync::watch::Sender<bool>,
    Arc<AtomicUsize>,
    RunningBridge,
) {
    let h = Harness::new("", None).await;
    let (release, released) = tokio::sync::watch::channel(false);
    let handled = Arc::new(AtomicUsize::new(0));
    let running = h
        .run(Stuck {
            released,
            handled: handled.clone(),
        })
        .await;
    for t in 0..BACKLOG / 100 {
        let events: Vec<Value> = (0..100)
            .map(|i| {
                let n = t * 100 + i;
                msg(
                    &format!("!r{}:localhost", n % 50),
                    &format!("$e{n}"),
                    "@alice:localhost",
                    "x",
                )
            })
            .collect();
        assert_eq!(
            h.push(&t.to_string(), &json!({"events": events})).await,
            200
        );
    }
    (h, release, handled, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_that_falls_behind_pushes_back_instead_of_filling_memory() {
    let (h, release, handled, running) = stuck_with_full_backlog().await;
    let more = json!({"events": [msg("!r0:localhost", "$more", "@alice:localhost", "x")]});
    let asked = std::time::Instant::now();
    let (status, body) = push_status(&h, "more", &more).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("retry later"),
        "{body}"
    );
    // bridgekit's BACKLOG_WAIT: the refusal came after waiting for room, not at once.
    assert!(
        asked.elapsed() >= Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    release.send(true).unwrap();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_finds_the_backlog_full_waits_for_room() {
    let (h, release, handled, running) = stuck_with_full_backlog().await;
    let more = json!({"events": [msg("!r0:localhost", "$more", "@alice:localhost", "x")]});
    let (url, token) = (h.as_url.clone(), h.hs_token.clone());
    let held = tokio::spawn(async move {
        reqwest::Client::new()
            .put(format!("{url}/_matrix/app/v1/transactions/more"))
            .bearer_auth(token)
            .json(&more)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "held while the backlog is full");
    release.send(true).unwrap();
    assert_eq!(held.await.unwrap(), 200, "taken once there was room");
    wait_until("every event, the held one last", 30, || {
        handled.load(Ordering::SeqCst) == BACKLOG + 1
    })
    .await;
    running.stop().await;
}
