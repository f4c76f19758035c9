//! Relay mode: a portal may have a relay login (`set-relay`, by a user whose login is in the
//! portal). Messages and edits of users without a login there go out through it, formatted
//! with their name (`relay.*` templates); reactions and redactions, which would look like
//! the relay's own, are refused with a clear status.

use ruma::UserId;
use ruma::events::room::message::MessageType;

use super::permissions::Permission;
use crate::bridge::BridgeError;
use crate::config::RelayOptions;
use crate::context::BridgeContext;
use crate::ids::LoginId;
use crate::store::PortalKey;

/// Where relay logins are kept: the framework's namespace of the bridge values (so they move
/// with `migrate-store`).
const NAMESPACE: &str = "bridgekit.relay";

fn key(portal: &PortalKey) -> String {
    serde_json::to_string(portal).expect("portal keys serialize")
}

/// The relay login of `portal`, if one is set.
pub(crate) async fn relay_of(
    ctx: &BridgeContext,
    portal: &PortalKey,
) -> Result<Option<LoginId>, BridgeError> {
    let value = ctx.store().value(NAMESPACE, &key(portal)).await?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// Forgets the relay of `portal`.
pub(crate) async fn forget(ctx: &BridgeContext, portal: &PortalKey) -> Result<(), BridgeError> {
    Ok(ctx.store().set_value(NAMESPACE, &key(portal), None).await?)
}

/// `set-relay` / `unset-relay`, typed in a portal by `sender`.
pub(crate) async fn command(
    ctx: &BridgeContext,
    sender: &UserId,
    portal: &PortalKey,
    set: bool,
) -> Result<String, BridgeError> {
    if !ctx.options().relay.enabled {
        return Err("relay mode is off on this bridge (relay.enabled)".into());
    }
    if ctx.permissions().of(sender) < Permission::User {
        return Err("you may not set the relay of this room".into());
    }
    if !set {
        forget(ctx, portal).await?;
        return Ok(
            "This room has no relay now: users without a login here are not bridged.".into(),
        );
    }
    let links = ctx.store().portal_logins(portal).await?;
    let mine = links
        .iter()
        .find(|l| l.user_id == sender)
        .ok_or("you have no login in this room to relay through")?;
    let value = serde_json::to_value(&mine.login_id)?;
    ctx.store()
        .set_value(NAMESPACE, &key(portal), Some(&value))
        .await?;
    Ok(format!(
        "Messages of users without a login here now go out through your login {}.",
        mine.login_id
    ))
}

/// A message from `name`, as the relay says it: a text (or notice) with the template filled
/// in (a file becomes a line naming it).
pub(crate) fn format(options: &RelayOptions, name: &str, msgtype: &MessageType) -> MessageType {
    let fill = |template: &str, message: &str| {
        template
            .replace("{displayname}", name)
            .replace("{message}", message)
    };
    match msgtype {
        MessageType::Text(t) => MessageType::text_plain(fill(&options.text, &t.body)),
        MessageType::Notice(n) => MessageType::notice_plain(fill(&options.notice, &n.body)),
        MessageType::Emote(e) => MessageType::text_plain(fill(&options.emote, &e.body)),
        other => MessageType::text_plain(fill(&options.file, other.body())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_the_sender() {
        let options = RelayOptions::default();
        let said = format(&options, "bob", &MessageType::text_plain("hi"));
        assert_eq!(said.body(), "bob: hi");
        let acted = format(&options, "bob", &MessageType::emote_plain("waves"));
        assert_eq!(acted.body(), "* bob waves");
        assert!(matches!(acted, MessageType::Text(_)));
    }
}
