//! Which items of one room may be handled alongside each other when the operator lets a busy
//! room trade order for speed (`bridge.sends_in_flight_per_room` above 1).
//!
//! Only plain messages overlap: a message, sticker or encrypted event without a relation
//! (`m.relates_to`, which an encrypting client keeps in the clear). Anything that refers to
//! an earlier event (a reply, an edit, a reaction, a redaction), every state event and every
//! remote event that is not a plain message waits until the items before it are done, so it
//! never overtakes what it refers to. Plain messages overlap only across senders: the lane
//! of each is its sender, so one person's messages still arrive in the order written (and a
//! new ghost's first send, which may wait for its join, holds back only its own).

use std::hash::{Hash, Hasher};

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::keyed_queue::Overlap;
use crate::remote::RemoteEvent;
use crate::store::queues::{InboxItem, ItemKind, OutboxEntry, OutboxOp};

/// Inbox items of one room: plain timeline messages overlap, one lane per sender.
pub(crate) fn inbox(width: usize) -> Overlap<(u64, InboxItem)> {
    Overlap {
        width,
        lane: |(_, item)| {
            if item.kind != ItemKind::Timeline {
                return None;
            }
            plain_event_lane(&item.json)
        },
    }
}

/// Sends to one room: plain messages overlap, one lane per sender.
pub(crate) fn outbox(width: usize) -> Overlap<(u64, OutboxEntry)> {
    Overlap {
        width,
        lane: |(_, entry)| match &entry.op {
            OutboxOp::Message {
                event_type,
                content,
            } if is_message_type(event_type) && !has_relation(content.get()) => {
                Some(lane_of(entry.sender.as_str()))
            }
            _ => None,
        },
    }
}

/// Remote events of one portal: messages that reply to nothing overlap, one lane per
/// remote sender.
pub(crate) fn remote<K>(width: usize) -> Overlap<(u64, K, RemoteEvent)> {
    Overlap {
        width,
        lane: |(_, _, event)| match event {
            RemoteEvent::Message(message) if message.reply_to.is_none() => {
                Some(lane_of(message.sender.id.as_str()))
            }
            _ => None,
        },
    }
}

/// A sender's lane: a hash of its ID (two senders sharing one only wait for each other).
fn lane_of(sender: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    sender.hash(&mut hasher);
    hasher.finish()
}

fn is_message_type(event_type: &str) -> bool {
    matches!(
        event_type,
        "m.room.message" | "m.sticker" | "m.room.encrypted"
    )
}

/// The parts of a homeserver event that decide whether it may overlap.
#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sender: Option<std::borrow::Cow<'a, str>>,
    state_key: Option<IgnoredAny>,
    #[serde(default)]
    content: Option<ContentHead>,
}

#[derive(Deserialize)]
struct ContentHead {
    #[serde(rename = "m.relates_to")]
    relates_to: Option<IgnoredAny>,
}

/// The lane (its sender's) of a message-like event without a state key or relation; `None`
/// for any other event and for what does not parse.
fn plain_event_lane(json: &str) -> Option<u64> {
    let head = serde_json::from_str::<EventHead<'_>>(json).ok()?;
    let plain = head.state_key.is_none()
        && is_message_type(&head.event_type)
        && head.content.is_none_or(|c| c.relates_to.is_none());
    plain.then(|| lane_of(head.sender.as_deref().unwrap_or_default()))
}

/// Whether event content carries `m.relates_to`; true for what does not parse.
fn has_relation(content: &str) -> bool {
    serde_json::from_str::<ContentHead>(content).map_or(true, |c| c.relates_to.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_messages_overlap() {
        let plain = r#"{"type":"m.room.message","sender":"@a:x","content":{"msgtype":"m.text","body":"hi"}}"#;
        let encrypted = r#"{"type":"m.room.encrypted","content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"…"}}"#;
        let reply = r#"{"type":"m.room.message","content":{"body":"re","m.relates_to":{"m.in_reply_to":{"event_id":"$e"}}}}"#;
        let encrypted_edit = r#"{"type":"m.room.encrypted","content":{"ciphertext":"…","m.relates_to":{"rel_type":"m.replace","event_id":"$e"}}}"#;
        let reaction = r#"{"type":"m.reaction","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e","key":"👍"}}}"#;
        let redaction = r#"{"type":"m.room.redaction","redacts":"$e","content":{}}"#;
        let member =
            r#"{"type":"m.room.member","state_key":"@a:x","content":{"membership":"join"}}"#;
        let state_message = r#"{"type":"m.room.message","state_key":"","content":{}}"#;
        assert_eq!(plain_event_lane(plain), Some(lane_of("@a:x")));
        assert_ne!(lane_of("@a:x"), lane_of("@b:x"));
        assert_eq!(plain_event_lane(encrypted), Some(lane_of("")));
        for other in [
            reply,
            encrypted_edit,
            reaction,
            redaction,
            member,
            state_message,
            "not json",
        ] {
            assert_eq!(plain_event_lane(other), None, "{other}");
        }
        assert!(!has_relation(r#"{"body":"hi"}"#));
        assert!(has_relation(r#"{"body":"hi","m.relates_to":{}}"#));
    }
}
