//! Telling users what happened to their event: a notice in the room when it could not be
//! bridged (`bridge.error_notices`), and `com.beeper.message_send_status` events for every
//! outcome (`bridge.message_status`), as the peers' clients understand them.

use ruma::events::relation::{InReplyTo, Reply};
use ruma::events::room::message::{Relation, RoomMessageEventContent};
use ruma::{EventId, RoomId, UserId};
use serde_json::json;

use super::Unsupported;
use crate::bridge::BridgeError;
use crate::client::{ClientError, Outgoing};
use crate::context::BridgeContext;

/// Reports the outcome of handling `event_id`; failures to report are only logged.
pub(crate) async fn report(
    ctx: &BridgeContext,
    room_id: &RoomId,
    event_id: &EventId,
    outcome: &Result<(), BridgeError>,
) {
    let options = ctx.options();
    let unsupported = outcome
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<Unsupported>());
    if let Err(error) = outcome
        && options.error_notices
        && unsupported.is_none()
    {
        let mut notice = RoomMessageEventContent::notice_plain(format!("⚠️ Not bridged: {error}"));
        notice.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(
            event_id.to_owned(),
        ))));
        if let Err(e) = ctx.bot().send(room_id, &notice).await {
            tracing::warn!(error = %e, %room_id, "could not send an error notice");
        }
    }
    if options.message_status {
        let (status, reason, message) = match outcome {
            Ok(()) => ("SUCCESS", None, None),
            Err(_) if unsupported.is_some() => (
                "FAIL_PERMANENT",
                Some("m.event_not_handled"),
                unsupported.map(ToString::to_string),
            ),
            Err(error) => (
                "FAIL_RETRIABLE",
                Some("m.foreign_network_error"),
                Some(error.to_string()),
            ),
        };
        let mut content = json!({
            "network": ctx.appservice_id(),
            "relates_to": {"rel_type": "m.reference", "event_id": event_id},
            "status": status,
        });
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        if let Some(message) = message {
            content["message"] = message.into();
        }
        let raw = serde_json::value::to_raw_value(&content).expect("JSON value serializes");
        let outgoing = Outgoing::raw_message(room_id, "com.beeper.message_send_status", raw);
        if let Err(e) = ctx.bot().queue(outgoing).await {
            tracing::warn!(error = %e, %room_id, "could not queue a message status event");
        }
    }
}

/// Tells the portal's room that a remote event could not be applied
/// (`bridge.error_notices`), so it is never only a log line.
pub(crate) async fn report_remote_failure(
    ctx: &BridgeContext,
    key: &crate::store::PortalKey,
    error: &(dyn std::error::Error + Send + Sync),
) {
    metrics::counter!("bridgekit_remote_failed_total").increment(1);
    if !ctx.options().error_notices {
        return;
    }
    let Ok(Some(portal)) = ctx.store().portal_by_key(key).await else {
        return; // no room to tell
    };
    let notice = RoomMessageEventContent::notice_plain(format!(
        "⚠️ Something from the remote network could not be bridged: {error}"
    ));
    match Outgoing::message(&portal.room_id, &notice) {
        Ok(outgoing) => {
            if let Err(e) = ctx.bot().queue(outgoing).await {
                tracing::warn!(error = %e, room_id = %portal.room_id, "could not queue a notice");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not build a notice"),
    }
}

/// Tells the room that a send was given up (`bridge.error_notices`), so it is never only a
/// log line. The bot's own sends (notices, statuses) are not reported, so a room that refuses
/// the bot does not start a loop.
pub(crate) async fn report_given_up(
    ctx: &BridgeContext,
    room_id: &RoomId,
    sender: &UserId,
    error: &ClientError,
) {
    metrics::counter!("bridgekit_outbox_given_up_total").increment(1);
    if !ctx.options().error_notices || sender == ctx.bot_user_id() {
        return;
    }
    let notice = RoomMessageEventContent::notice_plain(format!(
        "⚠️ A message from {sender} could not be delivered to this room and was given up: {error}"
    ));
    match Outgoing::message(room_id, &notice) {
        Ok(outgoing) => {
            if let Err(e) = ctx.bot().queue(outgoing).await {
                tracing::warn!(error = %e, %room_id, "could not queue a given-up notice");
            }
        }
        Err(e) => tracing::warn!(error = %e, %room_id, "could not build a given-up notice"),
    }
}
