//! Encrypting in the outbox: a message to an encrypted room is sealed once, before its first
//! attempt, and the sealed entry is written back, so every retry (and a resend after a
//! crash) carries the same ciphertext under the same txnId and no Megolm index is used twice.

use crate::client::{ClientError, Intent};
use crate::context::BridgeContext;
use crate::store::queues::{OutboxEntry, OutboxOp};

use super::Encryption;

/// Longest pause between attempts to encrypt while the homeserver is unavailable.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(60);

/// Seals `entry` if the bridge encrypts and its room is encrypted, retrying failures (the
/// homeserver down while keys are fetched or shared) until `bridge.send_deadline_secs`;
/// `None` once the bridge stops. `Ok(true)` when the entry changed.
pub(crate) async fn seal_with_retries(
    ctx: &BridgeContext,
    entry: &mut OutboxEntry,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Option<Result<bool, ClientError>> {
    let Some(encryption) = ctx.encryption() else {
        return Some(Ok(false));
    };
    let started = std::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        if *stopping.borrow() {
            return None;
        }
        let attempt = tokio::select! {
            result = encryption.seal(ctx, entry) => result,
            _ = stopping.wait_for(|s| *s) => return None,
        };
        match attempt {
            Err(e) if started.elapsed() < ctx.options().send_deadline => {
                tracing::warn!(error = %e, room_id = %entry.room_id, retry_in_ms = backoff.as_millis() as u64, "cannot encrypt a send yet; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(crate::client::jitter(backoff)) => {}
                    _ = stopping.wait_for(|s| *s) => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return Some(other),
        }
    }
}

impl Encryption {
    /// Seals `entry` when its room is encrypted; `true` when it changed. Event types already
    /// encrypted and non-message operations (state, redactions) pass as they are.
    pub(crate) async fn seal(
        &self,
        ctx: &BridgeContext,
        entry: &mut OutboxEntry,
    ) -> Result<bool, ClientError> {
        let OutboxOp::Message {
            event_type,
            content,
        } = &entry.op
        else {
            return Ok(false);
        };
        if event_type == "m.room.encrypted" {
            return Ok(false);
        }
        // Read as the bot, which is in the bridge's rooms; a ghost may join only when its
        // send is attempted.
        let bot = ctx.bot();
        let sender = Intent::new(ctx.clone(), entry.sender.clone());
        let settings = match self.rooms.settings(&bot, &entry.room_id).await {
            Err(e) if e.is_not_in_room() || e.status() == Some(403) => {
                self.rooms.settings(&sender, &entry.room_id).await?
            }
            other => other?,
        };
        let Some(settings) = settings else {
            return Ok(false);
        };
        tracing::debug!(room_id = %entry.room_id, "encrypting a send");
        let members = match self.rooms.members(&bot, &entry.room_id).await {
            Err(e) if e.is_not_in_room() || e.status() == Some(403) => {
                self.rooms.members(&sender, &entry.room_id).await?
            }
            other => other?,
        };
        let started = std::time::Instant::now();
        let sealed = self
            .machine
            .encrypt(
                entry.room_id.as_str(),
                &settings,
                &members,
                event_type,
                content.get(),
            )
            .await
            .map_err(|e| ClientError::Request(format!("cannot encrypt for this room: {e}")))?;
        metrics::histogram!("bridgekit_encrypt_seconds").record(started.elapsed().as_secs_f64());
        entry.op = OutboxOp::Message {
            event_type: "m.room.encrypted".into(),
            content: serde_json::value::RawValue::from_string(sealed)
                .map_err(|e| ClientError::Request(e.to_string()))?,
        };
        Ok(true)
    }
}
