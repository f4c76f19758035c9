//! The echo bridge's "remote network", in-process: whatever it receives it answers with an
//! echo from the sender's remote counterpart. A real bridge talks to a real network here.

use bridgekit::ruma::EventId;

/// A message on the remote network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMessage {
    /// The remote message ID.
    pub id: String,
    /// The remote user who wrote it.
    pub author: String,
    /// Its text.
    pub body: String,
    /// Who the author stands for on Matrix (the echo network knows; a real network would
    /// carry a display name instead).
    pub displayname_hint: String,
}

/// Something that happens on the remote network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteEvent {
    /// A new message.
    Message(RemoteMessage),
    /// A message's text changed.
    Edit {
        /// The edited message.
        id: String,
        /// The edit's own ID.
        edit_id: String,
        /// Who edited it.
        author: String,
        /// The new text.
        body: String,
    },
    /// A message was deleted.
    Delete {
        /// The deleted message.
        id: String,
        /// Why, if said.
        reason: Option<String>,
    },
}

/// The remote ID the network gives a message that came from Matrix event `event_id`.
pub fn remote_id_for(event_id: &EventId) -> String {
    format!("m{}", event_id.as_str().trim_start_matches('$'))
}

/// The ID of the echo of remote message `id`.
pub fn echo_id_for(id: &str) -> String {
    format!("{id}.echo")
}

/// Hands an event to the network and returns what the network says back.
pub fn deliver(event: RemoteEvent) -> Vec<RemoteEvent> {
    match event {
        RemoteEvent::Message(m) => vec![RemoteEvent::Message(RemoteMessage {
            id: echo_id_for(&m.id),
            ..m
        })],
        RemoteEvent::Edit {
            id,
            edit_id,
            author,
            body,
        } => {
            vec![RemoteEvent::Edit {
                id: echo_id_for(&id),
                edit_id: echo_id_for(&edit_id),
                author,
                body,
            }]
        }
        RemoteEvent::Delete { id, reason } => vec![RemoteEvent::Delete {
            id: echo_id_for(&id),
            reason,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_answered_by_an_echo_of_it() {
        let msg = RemoteMessage {
            id: "m1".into(),
            author: "alice".into(),
            body: "hi".into(),
            displayname_hint: "alice".into(),
        };
        assert_eq!(
            deliver(RemoteEvent::Message(msg.clone())),
            vec![RemoteEvent::Message(RemoteMessage {
                id: "m1.echo".into(),
                ..msg
            })]
        );
        let edit = RemoteEvent::Edit {
            id: "m1".into(),
            edit_id: "m2".into(),
            author: "alice".into(),
            body: "yo".into(),
        };
        assert_eq!(
            deliver(edit),
            vec![RemoteEvent::Edit {
                id: "m1.echo".into(),
                edit_id: "m2.echo".into(),
                author: "alice".into(),
                body: "yo".into()
            }]
        );
        assert_eq!(
            deliver(RemoteEvent::Delete {
                id: "m1".into(),
                reason: None
            }),
            vec![RemoteEvent::Delete {
                id: "m1.echo".into(),
                reason: None
            }]
        );
        assert_eq!(remote_id_for(&EventId::parse("$abc").unwrap()), "mabc");
    }
}
