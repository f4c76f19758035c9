//! IRC ↔ the framework's terms, as pure functions: one IRC line becomes at most one remote
//! event for one channel, and one Matrix message becomes IRC lines.

use bridgekit::{
    ChatId, MessageId, PortalKey, RemoteContent, RemoteEvent, RemoteMessage, RemoteUser,
    RemoteUserId,
};
use irc_proto::{Command, Message, Response};

/// Longest text sent in one IRC line (RFC 1459 allows 512 bytes with the command and CRLF).
const MAX_TEXT: usize = 400;

/// What one IRC line means to the bridge.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per IRC line, moved once: boxing buys nothing
pub enum Incoming {
    /// Something in one channel.
    Channel(PortalKey, RemoteEvent),
    /// A user left the network: they leave every bridged channel they were in.
    Quit {
        nick: RemoteUserId,
        reason: Option<String>,
    },
    /// A user changed nick.
    Renamed { old: String, new: String },
    /// The relay was kicked from a channel: join it again.
    RelayKicked(String),
    /// Nothing to bridge.
    Nothing,
}

/// The portal of an IRC channel (channel names are case-insensitive); `None` for an empty
/// name.
pub fn portal_key(channel: &str) -> Option<PortalKey> {
    ChatId::new(channel.to_lowercase()).ok().map(PortalKey::new)
}

/// The remote user behind a nick (nicks are case-insensitive); `None` for an empty nick.
pub fn user_id(nick: &str) -> Option<RemoteUserId> {
    RemoteUserId::new(nick.to_lowercase()).ok()
}

fn user(nick: &str) -> Option<RemoteUser> {
    Some(RemoteUser::new(user_id(nick)?).with_displayname(nick))
}

/// A message ID for a line that has none (IRC gives messages no IDs).
fn next_id() -> MessageId {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = format!("{nanos}.{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    MessageId::new(id).expect("digits and a dot")
}

/// Translates one line from the server; `relay` is the relay's own nick (its lines are its
/// own echoes).
pub fn incoming(message: &Message, relay: &str) -> Incoming {
    translate(message, relay).unwrap_or(Incoming::Nothing)
}

/// [`incoming`], with `None` for a line naming no one or nothing valid.
fn translate(message: &Message, relay: &str) -> Option<Incoming> {
    let nick = message.source_nickname().unwrap_or_default();
    let from_relay = nick.eq_ignore_ascii_case(relay);
    let channel_event = |channel: &str, event| Some(Incoming::Channel(portal_key(channel)?, event));
    match &message.command {
        Command::PRIVMSG(target, text) | Command::NOTICE(target, text)
            if is_channel(target) && !from_relay =>
        {
            let content = match (&message.command, ctcp_action(text)) {
                (_, Some(action)) => RemoteContent::emote(action),
                (Command::NOTICE(..), None) => RemoteContent::notice(text.clone()),
                _ => RemoteContent::text(text.clone()),
            };
            let msg = RemoteMessage::new(next_id(), user(nick)?, content);
            channel_event(target, RemoteEvent::Message(msg))
        }
        Command::JOIN(channels, _, _) if !from_relay => {
            // A JOIN names one channel in practice; a list is joined one by one.
            match channels.split(',').next() {
                Some(channel) => channel_event(channel, RemoteEvent::MemberJoined(user(nick)?)),
                None => None,
            }
        }
        Command::PART(channel, reason) if !from_relay => channel_event(
            channel,
            RemoteEvent::MemberLeft {
                user: user(nick)?,
                reason: reason.clone(),
                kicked_by: None,
            },
        ),
        Command::KICK(channel, victim, _) if victim.eq_ignore_ascii_case(relay) => {
            Some(Incoming::RelayKicked(channel.clone()))
        }
        Command::KICK(channel, victim, reason) => channel_event(
            channel,
            RemoteEvent::MemberLeft {
                user: user(victim)?,
                reason: reason.clone(),
                kicked_by: Some(user(nick)?),
            },
        ),
        Command::QUIT(reason) if !from_relay => Some(Incoming::Quit {
            nick: user_id(nick)?,
            reason: reason.clone(),
        }),
        Command::NICK(new) if !from_relay && !nick.is_empty() && !new.is_empty() => {
            Some(Incoming::Renamed {
                old: nick.to_owned(),
                new: new.clone(),
            })
        }
        Command::TOPIC(channel, Some(topic)) if !from_relay => channel_event(
            channel,
            RemoteEvent::ChatInfoChanged {
                name: None,
                topic: Some(topic.clone()),
                sender: Some(user(nick)?),
            },
        ),
        // The topic the server reports when the relay joins: `332 relay #chan :topic`.
        Command::Response(Response::RPL_TOPIC, args) if args.len() >= 3 => channel_event(
            &args[1],
            RemoteEvent::ChatInfoChanged {
                name: None,
                topic: Some(args[2].clone()),
                sender: None,
            },
        ),
        _ => None,
    }
}

fn is_channel(target: &str) -> bool {
    target.starts_with(['#', '&', '+', '!'])
}

fn ctcp_action(text: &str) -> Option<&str> {
    text.strip_prefix("\u{1}ACTION ")
        .map(|rest| rest.strip_suffix('\u{1}').unwrap_or(rest))
}

/// How a Matrix message goes out through the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `<name> text`
    Text,
    /// `NOTICE`, `<name> text`
    Notice,
    /// `* name does something` (CTCP ACTION)
    Emote,
}

/// The IRC lines that say `body` from Matrix user `name` in `channel`: one per line of text,
/// long lines split, control characters that would end a line removed.
pub fn outgoing(channel: &str, name: &str, kind: Kind, body: &str) -> Vec<Message> {
    let mut lines = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let clean: String = line.chars().filter(|c| *c != '\r' && *c != '\0').collect();
        for chunk in split(&clean, MAX_TEXT) {
            let command = match kind {
                Kind::Text => Command::PRIVMSG(channel.into(), format!("<{name}> {chunk}")),
                Kind::Notice => Command::NOTICE(channel.into(), format!("<{name}> {chunk}")),
                Kind::Emote => {
                    Command::PRIVMSG(channel.into(), format!("\u{1}ACTION {name} {chunk}\u{1}"))
                }
            };
            lines.push(Message::from(command));
        }
    }
    lines
}

/// The IRC lines that say `body` in `channel` from a user's own connection (no `<name>`:
/// the nick is theirs).
pub fn outgoing_as_self(channel: &str, kind: Kind, body: &str) -> Vec<Message> {
    let mut lines = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let clean: String = line.chars().filter(|c| *c != '\r' && *c != '\0').collect();
        for chunk in split(&clean, MAX_TEXT) {
            let command = match kind {
                Kind::Text => Command::PRIVMSG(channel.into(), chunk.to_owned()),
                Kind::Notice => Command::NOTICE(channel.into(), chunk.to_owned()),
                Kind::Emote => {
                    Command::PRIVMSG(channel.into(), format!("\u{1}ACTION {chunk}\u{1}"))
                }
            };
            lines.push(Message::from(command));
        }
    }
    lines
}

/// Splits `text` into pieces of at most `max` bytes, on character boundaries.
fn split(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Message {
        line.parse().unwrap()
    }

    #[test]
    fn channel_lines_become_remote_events() {
        let Incoming::Channel(key, RemoteEvent::Message(m)) =
            incoming(&parse(":Alice!a@h PRIVMSG #Rust :hello there"), "matrix")
        else {
            panic!()
        };
        assert_eq!(Some(key), portal_key("#RUST"));
        assert_eq!(m.sender, user("Alice").unwrap());
        assert_eq!(m.sender.id, "alice");
        assert!(matches!(m.content, RemoteContent::Text { ref body, .. } if body == "hello there"));

        let Incoming::Channel(_, RemoteEvent::Message(m)) = incoming(
            &parse(":bob!b@h PRIVMSG #rust :\u{1}ACTION waves\u{1}"),
            "matrix",
        ) else {
            panic!()
        };
        assert!(matches!(m.content, RemoteContent::Emote { ref body, .. } if body == "waves"));
        let Incoming::Channel(_, RemoteEvent::Message(m)) =
            incoming(&parse(":bob!b@h NOTICE #rust :heads up"), "matrix")
        else {
            panic!()
        };
        assert!(matches!(m.content, RemoteContent::Notice { ref body, .. } if body == "heads up"));

        assert!(matches!(
            incoming(&parse(":bob!b@h KICK #rust carol :spam"), "matrix"),
            Incoming::Channel(
                _,
                RemoteEvent::MemberLeft {
                    kicked_by: Some(_),
                    ..
                }
            )
        ));
        assert_eq!(
            incoming(&parse(":bob!b@h KICK #rust Matrix :bye"), "matrix"),
            Incoming::RelayKicked("#rust".into())
        );
        assert_eq!(
            incoming(&parse(":bob!b@h NICK robert"), "matrix"),
            Incoming::Renamed {
                old: "bob".into(),
                new: "robert".into()
            }
        );
        assert!(matches!(
            incoming(&parse(":srv 332 matrix #rust :the topic"), "matrix"),
            Incoming::Channel(
                _,
                RemoteEvent::ChatInfoChanged {
                    topic: Some(_),
                    sender: None,
                    ..
                }
            )
        ));
    }

    #[test]
    fn the_relays_own_lines_and_private_messages_are_not_bridged() {
        assert_eq!(
            incoming(&parse(":matrix!m@h PRIVMSG #rust :<alice> hi"), "matrix"),
            Incoming::Nothing
        );
        assert_eq!(
            incoming(&parse(":matrix!m@h JOIN #rust"), "matrix"),
            Incoming::Nothing
        );
        assert_eq!(
            incoming(&parse(":bob!b@h PRIVMSG matrix :psst"), "matrix"),
            Incoming::Nothing
        );
    }

    #[test]
    fn matrix_text_becomes_safe_irc_lines() {
        let lines = outgoing("#rust", "alice", Kind::Text, "one\r\ntwo\n\nthree\0");
        let text: Vec<String> = lines.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            [
                "PRIVMSG #rust :<alice> one\r\n",
                "PRIVMSG #rust :<alice> two\r\n",
                "PRIVMSG #rust :<alice> three\r\n"
            ]
        );
        let long = "é".repeat(300); // 600 bytes
        let lines = outgoing("#rust", "a", Kind::Emote, &long);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0]
                .to_string()
                .starts_with("PRIVMSG #rust :\u{1}ACTION a é")
        );
    }
}
