//! `login-matrix <access token>` and `logout-matrix`: a user turns double puppeting on with
//! their own Matrix access token, or off.

use ruma::{EventId, RoomId, UserId};

use crate::bridge::BridgeError;
use crate::context::BridgeContext;
use crate::store::DoublePuppet;

/// The commands, for `help`.
pub(crate) fn help(ctx: &BridgeContext) -> Vec<String> {
    let prefix = &ctx.options().command_prefix;
    let mut lines = Vec::new();
    if ctx.options().double_puppet.allow_manual {
        lines.push(format!(
            "{prefix}login-matrix <access token>: what you do from elsewhere on your remote account appears as you in Matrix (double puppeting; the message is redacted)"
        ));
    }
    if ctx.options().double_puppet.is_available() {
        lines.push(format!(
            "{prefix}logout-matrix: turn double puppeting off (a ghost stands for your remote account)"
        ));
    }
    lines
}

/// Runs a double-puppeting command; `None` when `name` is not one.
pub(crate) async fn run(
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    event_id: &EventId,
    name: &str,
    args: &[String],
) -> Option<Result<String, BridgeError>> {
    let answer = match name {
        "login-matrix" => login(ctx, sender, room, event_id, args).await,
        "logout-matrix" => match super::disable(ctx, sender).await {
            Ok(true) => {
                Ok("Double puppeting is off: a ghost stands for your remote account.".into())
            }
            Ok(false) => Ok("Double puppeting was not on.".into()),
            Err(error) => Err(error),
        },
        _ => return None,
    };
    Some(answer)
}

async fn login(
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    event_id: &EventId,
    args: &[String],
) -> Result<String, BridgeError> {
    if !ctx.options().double_puppet.allow_manual {
        return Err(
            "this bridge does not take access tokens (double_puppet.allow_manual is off)".into(),
        );
    }
    let [token] = args else {
        return Err(
            "usage: login-matrix <access token> (your client shows it under Help & About)".into(),
        );
    };
    let enabled = super::enable(ctx, sender, DoublePuppet::with_access_token(token.as_str())).await;
    // The token is a secret in any case: as the user (when it works) or as the bot.
    let redacted = super::redact_secret(ctx, sender, room, event_id).await;
    enabled.map_err(|e| format!("the homeserver did not take that token: {e}"))?;
    let mut answer =
        "Double puppeting is on: what you do from elsewhere on your remote account appears as you in Matrix.".to_owned();
    if redacted.is_err() {
        answer.push_str(
            " I could not redact your message with the token: please redact it yourself.",
        );
    }
    Ok(answer)
}
