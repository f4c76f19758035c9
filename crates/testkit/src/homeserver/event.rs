//! One event as the fake homeserver keeps it: what a test inspects, and what the appservice
//! receives (as JSON) in a transaction.

use serde_json::{Value, json};

/// An event in a room of the fake homeserver.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RoomEvent {
    /// Its ID (`$…`).
    pub event_id: String,
    /// The room it is in.
    pub room_id: String,
    /// Who sent it.
    pub sender: String,
    /// Its type (`m.room.message`, …).
    pub event_type: String,
    /// Set for state events.
    pub state_key: Option<String>,
    /// Its content (emptied once redacted, as a homeserver does).
    pub content: Value,
    /// For a redaction: the event it redacts.
    pub redacts: Option<String>,
    /// When it was sent (the appservice's `ts` when it gave one).
    pub origin_server_ts: u64,
    /// Whether a later redaction took it down.
    pub redacted: bool,
}

impl RoomEvent {
    /// The message body, for a message.
    pub fn body(&self) -> Option<&str> {
        self.content["body"].as_str()
    }

    /// The message type (`m.text`, `m.emote`, …), for a message.
    pub fn msgtype(&self) -> Option<&str> {
        self.content["msgtype"].as_str()
    }

    /// The membership (`join`, `invite`, `leave`, `ban`), for a member event.
    pub fn membership(&self) -> Option<&str> {
        (self.event_type == "m.room.member")
            .then(|| self.content["membership"].as_str())
            .flatten()
    }

    /// The event this one relates to (`m.relates_to.event_id`: an edit, a reaction, a reply
    /// in a thread), or the redacted one for a redaction.
    pub fn relates_to(&self) -> Option<&str> {
        self.content["m.relates_to"]["event_id"]
            .as_str()
            .or(self.redacts.as_deref())
    }

    /// Whether this is an edit (`m.replace`) of another message.
    pub fn is_edit(&self) -> bool {
        self.content["m.relates_to"]["rel_type"] == "m.replace"
    }

    /// The event as the Client-Server and appservice APIs carry it.
    pub fn to_json(&self) -> Value {
        let mut json = json!({
            "event_id": self.event_id,
            "room_id": self.room_id,
            "sender": self.sender,
            "type": self.event_type,
            "content": self.content,
            "origin_server_ts": self.origin_server_ts,
            "unsigned": {},
        });
        if let Some(key) = &self.state_key {
            json["state_key"] = key.clone().into();
        }
        if let Some(redacts) = &self.redacts {
            json["redacts"] = redacts.clone().into();
            json["content"]["redacts"] = redacts.clone().into();
        }
        json
    }
}
