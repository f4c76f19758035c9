//! Hands the appservice the events it is interested in, as Synapse does: one transaction at
//! a time, in order, the same transaction ID and events again until it is acknowledged with
//! a 200, backing off between attempts (docs/homeserver-behaviour.md §1).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::Inner;

/// Most events in one transaction (Synapse sends at most 100; fewer keeps tests quick).
const BATCH: usize = 50;

/// Runs until the fake homeserver is dropped.
pub(super) async fn run(hs: std::sync::Weak<Inner>) {
    let http = reqwest::Client::new();
    let mut txn = 0u64;
    loop {
        let Some(inner) = hs.upgrade() else { return };
        let batch: Vec<_> = {
            let world = inner.world.lock().unwrap();
            world.to_push.iter().take(BATCH).cloned().collect()
        };
        if batch.is_empty() || !*inner.pushing.lock().unwrap() {
            drop(inner);
            // Polled: holding the server's state here would keep it alive after the test.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        txn += 1;
        deliver(&inner, &http, txn, batch).await;
    }
}

/// Pushes one transaction until the appservice takes it.
async fn deliver(hs: &Arc<Inner>, http: &reqwest::Client, txn: u64, batch: Vec<serde_json::Value>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(appservice) = hs.appservice.lock().unwrap().clone() else {
            return;
        };
        let url = format!(
            "{}/_matrix/app/v1/transactions/tk{}-{txn}",
            appservice.url, hs.id
        );
        let answer = http
            .put(url)
            .bearer_auth(&appservice.hs_token)
            .json(&json!({ "events": batch }))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if matches!(&answer, Ok(r) if r.status() == 200) {
            hs.world.lock().unwrap().to_push.drain(..batch.len());
            hs.log.lock().unwrap().transactions_acked += 1;
            hs.acked.notify_waiters();
            return;
        }
        tracing::debug!(
            txn,
            ?backoff,
            "the appservice did not take a transaction; retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
