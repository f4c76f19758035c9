//! Does the homeserver give the bridge what encryption needs? At start the bot sends its own
//! device a to-device ping and waits for it in a transaction: it proves to-device delivery
//! (MSC2409/MSC4203), and the same transaction must carry the device's one-time-key counts
//! (MSC3202). Each missing piece is named with its fix, in one line.

use std::time::Duration;

use ruma::api::client::to_device::send_event_to_device;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use tokio::sync::watch;

use crate::context::BridgeContext;
use crate::store::queues::{InboxItem, ItemKind};

/// The to-device event type of the ping.
const PING: &str = "io.bridgekit.encryption_ping";

/// How long the ping may take to come back.
const PING_WAIT: Duration = Duration::from_secs(30);
/// How often the ping is sent again while none came back: a busy Synapse was seen to leave
/// a to-device message undelivered until the next one woke its appservice sender.
const PING_AGAIN: Duration = Duration::from_secs(5);

/// What transactions have shown so far (the intake reports every one).
pub(crate) struct HomeserverSupport {
    /// `Some(device data came along)` once the ping came back.
    seen: watch::Sender<Option<bool>>,
}

impl Default for HomeserverSupport {
    fn default() -> Self {
        Self {
            seen: watch::channel(None).0,
        }
    }
}

impl HomeserverSupport {
    /// Looks at one transaction's items for the ping.
    pub(crate) fn observe(&self, items: &[InboxItem]) {
        if self.seen.borrow().is_some() {
            return;
        }
        let ping = items
            .iter()
            .any(|i| i.kind == ItemKind::ToDevice && i.json.contains(PING));
        if ping {
            let counts = items
                .iter()
                .any(|i| i.kind == ItemKind::DeviceData && i.json.contains("\"one_time_keys\""));
            let _ = self.seen.send(Some(counts));
        }
    }

    /// Sends the ping (again every [`PING_AGAIN`]) and waits for it; the error is the one
    /// line naming the fix.
    pub(crate) async fn check(&self, ctx: &BridgeContext, device_id: &str) -> Result<(), String> {
        let mut seen = self.seen.subscribe();
        let deadline = tokio::time::Instant::now() + PING_WAIT;
        let came = loop {
            send_ping(ctx, device_id).await?;
            let wait = PING_AGAIN.min(deadline - tokio::time::Instant::now());
            if let Ok(came) = tokio::time::timeout(wait, seen.wait_for(Option::is_some)).await {
                break came.ok().map(|v| *v);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tracing::debug!("the to-device ping has not come back yet; sending another");
        };
        match came {
            Some(Some(true)) => Ok(()),
            Some(_) => Err(
                "encryption.allow is set but the homeserver sends no one-time-key counts or device lists: set experimental_features: {msc3202_transaction_extensions: true} in homeserver.yaml (and org.matrix.msc3202: true in the registration), then restart the homeserver".into(),
            ),
            None => Err(format!(
                "encryption.allow is set but the homeserver did not deliver a to-device message to the bridge within {} s: set experimental_features: {{msc2409_to_device_messages_enabled: true}} in homeserver.yaml (and receive_ephemeral: true in the registration), then restart the homeserver",
                PING_WAIT.as_secs()
            )),
        }
    }
}

/// Sends the bot's own device one ping.
async fn send_ping(ctx: &BridgeContext, device_id: &str) -> Result<(), String> {
    let content = Raw::from_json(
        serde_json::value::to_raw_value(&serde_json::json!({ "sent_at": now_ms() }))
            .expect("serializes"),
    );
    let messages = [(
        ctx.bot_user_id().to_owned(),
        [(DeviceIdOrAllDevices::DeviceId(device_id.into()), content)].into(),
    )]
    .into();
    let request =
        send_event_to_device::v3::Request::new_raw(PING.into(), ctx.txn_ids().next(), messages);
    ctx.client()
        .execute(request, None)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot send the bot's device a to-device message: {e}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
