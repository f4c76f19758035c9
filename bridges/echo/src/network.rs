//! The echo bridge's "remote network", in-process: whatever is posted to it, it answers with
//! an echo from the poster's counterpart. A real bridge talks to a real network here; this
//! one's vocabulary (posts, happenings) is its own, as a real network's would be.

use bridgekit::RemoteContent;
use bridgekit::ruma::events::room::MediaSource;
use bridgekit::ruma::events::room::message::{FormattedBody, MessageFormat, MessageType};
use bridgekit::ruma::{EventId, OwnedMxcUri, ServerName, UserId};

/// What a post says, in the network's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Words, with an optional HTML rendering; `kind` says how they are meant.
    Words {
        /// Said, announced (a notice) or acted (an emote).
        kind: Kind,
        /// Plain text.
        plain: String,
        /// HTML, when the poster formatted it.
        html: Option<String>,
    },
    /// A file kept elsewhere (on the homeserver), posted by reference.
    File {
        /// What kind of file, as Matrix names it (`m.image`, `m.file`, …).
        msgtype: String,
        /// Its name or caption.
        name: String,
        /// Where it is.
        url: OwnedMxcUri,
        /// Its MIME type, if known.
        mimetype: Option<String>,
    },
}

/// How words are meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Plain speech.
    Said,
    /// An automated or low-priority notice.
    Announced,
    /// An action (`/me waves`).
    Acted,
}

/// A post on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// The network's ID for it.
    pub id: String,
    /// Who posted it.
    pub author: String,
    /// What it says.
    pub body: Body,
    /// Who the author stands for on Matrix (the echo network knows; a real network would
    /// carry a display name instead).
    pub author_hint: String,
}

/// Something that happens on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// A new post.
    Posted(Post),
    /// A post's body changed.
    Edited {
        /// The edited post.
        id: String,
        /// The edit's own ID.
        edit_id: String,
        /// Who edited it.
        author: String,
        /// The new body.
        body: Body,
    },
    /// A post was taken down.
    Deleted {
        /// The post.
        id: String,
        /// Why, if said.
        reason: Option<String>,
    },
}

impl Body {
    /// A Matrix message as the network carries it: words keep their kind and formatting,
    /// files go by reference (an encrypted file, which cannot, by its name).
    pub fn of(msgtype: &MessageType) -> Self {
        let words = |kind, plain: &str, formatted: &Option<FormattedBody>| Body::Words {
            kind,
            plain: plain.to_owned(),
            html: formatted
                .as_ref()
                .filter(|f| f.format == MessageFormat::Html)
                .map(|f| f.body.clone()),
        };
        let file = |msgtype: &str, name: &str, source: &MediaSource, mimetype: Option<&String>| {
            match source {
                MediaSource::Plain(url) => Body::File {
                    msgtype: msgtype.to_owned(),
                    name: name.to_owned(),
                    url: url.clone(),
                    mimetype: mimetype.cloned(),
                },
                MediaSource::Encrypted(_) => Body::Words {
                    kind: Kind::Said,
                    plain: format!("sent a file: {name}"),
                    html: None,
                },
            }
        };
        match msgtype {
            MessageType::Text(t) => words(Kind::Said, &t.body, &t.formatted),
            MessageType::Notice(n) => words(Kind::Announced, &n.body, &n.formatted),
            MessageType::Emote(e) => words(Kind::Acted, &e.body, &e.formatted),
            MessageType::Image(i) => {
                let mime = i.info.as_ref().and_then(|i| i.mimetype.as_ref());
                file("m.image", &i.body, &i.source, mime)
            }
            MessageType::File(f) => {
                let mime = f.info.as_ref().and_then(|i| i.mimetype.as_ref());
                file("m.file", &f.body, &f.source, mime)
            }
            MessageType::Video(v) => {
                let mime = v.info.as_ref().and_then(|i| i.mimetype.as_ref());
                file("m.video", &v.body, &v.source, mime)
            }
            MessageType::Audio(a) => {
                let mime = a.info.as_ref().and_then(|i| i.mimetype.as_ref());
                file("m.audio", &a.body, &a.source, mime)
            }
            other => words(Kind::Said, other.body(), &None),
        }
    }

    /// The body in the framework's terms, for bridging it into Matrix.
    pub fn into_content(self) -> RemoteContent {
        match self {
            Body::Words { kind, plain, html } => match kind {
                Kind::Said => RemoteContent::Text { body: plain, html },
                Kind::Announced => RemoteContent::Notice { body: plain, html },
                Kind::Acted => RemoteContent::Emote { body: plain, html },
            },
            Body::File {
                msgtype,
                name,
                url,
                mimetype,
            } => RemoteContent::MediaRef {
                msgtype,
                body: name,
                url,
                mimetype,
            },
        }
    }
}

/// The network user standing for a Matrix user: the localpart for users of `local`, the
/// whole ID for users of other servers (so two Alices never share a ghost).
pub fn author_for(local: &ServerName, user_id: &UserId) -> String {
    if user_id.server_name() == local {
        user_id.localpart().to_owned()
    } else {
        user_id.as_str().to_owned()
    }
}

/// The ID the network gives a post that came from Matrix event `event_id`.
pub fn id_for(event_id: &EventId) -> String {
    format!("m{}", event_id.as_str().trim_start_matches('$'))
}

/// The ID of the echo of post `id`.
pub fn echo_id_for(id: &str) -> String {
    format!("{id}.echo")
}

/// Hands a happening to the network and returns what the network says back: its echo.
pub fn deliver(happening: Happening) -> Vec<Happening> {
    match happening {
        Happening::Posted(post) => vec![Happening::Posted(Post {
            id: echo_id_for(&post.id),
            ..post
        })],
        Happening::Edited {
            id,
            edit_id,
            author,
            body,
        } => vec![Happening::Edited {
            id: echo_id_for(&id),
            edit_id: echo_id_for(&edit_id),
            author,
            body,
        }],
        Happening::Deleted { id, reason } => vec![Happening::Deleted {
            id: echo_id_for(&id),
            reason,
        }],
    }
}

#[cfg(test)]
mod tests {
    use bridgekit::ruma::events::room::message::{
        EmoteMessageEventContent, ImageMessageEventContent,
    };

    use super::*;

    #[test]
    fn every_happening_is_answered_by_an_echo_of_it() {
        let said = Body::Words {
            kind: Kind::Said,
            plain: "hi".into(),
            html: None,
        };
        let post = Post {
            id: "m1".into(),
            author: "alice".into(),
            body: said.clone(),
            author_hint: "alice".into(),
        };
        let echo = Post {
            id: "m1.echo".into(),
            ..post.clone()
        };
        assert_eq!(
            deliver(Happening::Posted(post)),
            vec![Happening::Posted(echo)]
        );
        let edited = deliver(Happening::Edited {
            id: "m1".into(),
            edit_id: "m2".into(),
            author: "alice".into(),
            body: said,
        });
        assert!(
            matches!(&edited[..], [Happening::Edited { id, edit_id, .. }] if id == "m1.echo" && edit_id == "m2.echo")
        );
        let deleted = deliver(Happening::Deleted {
            id: "m1".into(),
            reason: None,
        });
        assert!(matches!(&deleted[..], [Happening::Deleted { id, .. }] if id == "m1.echo"));
        assert_eq!(id_for(&EventId::parse("$abc").unwrap()), "mabc");
    }

    #[test]
    fn emotes_and_files_keep_their_kind() {
        let emote = MessageType::Emote(EmoteMessageEventContent::html("waves", "<b>waves</b>"));
        assert_eq!(
            Body::of(&emote),
            Body::Words {
                kind: Kind::Acted,
                plain: "waves".into(),
                html: Some("<b>waves</b>".into())
            }
        );
        let url: OwnedMxcUri = "mxc://localhost/abc".into();
        let image = MessageType::Image(ImageMessageEventContent::plain(
            "cat.png".into(),
            url.clone(),
        ));
        assert_eq!(
            Body::of(&image),
            Body::File {
                msgtype: "m.image".into(),
                name: "cat.png".into(),
                url,
                mimetype: None
            }
        );
    }
}
