//! Remote IDs, one type per kind, so a message ID cannot be passed where a user ID belongs.
//!
//! Every ID the remote network hands out (a chat, a user, a message, one part of a message, a
//! login) is a newtype over a string, serialized as the bare string. IDs are checked when
//! made and when read back: none is empty (except [`PartId`], where empty names the only
//! part) and none holds a NUL, which PostgreSQL cannot store. Matrix-side IDs are ruma's
//! types.
//!
//! ```
//! use bridgekit::ids::{ChatId, MessageId, RemoteUserId};
//!
//! let chat = ChatId::new("#rust")?;
//! let author = RemoteUserId::new("ferris")?;
//! let message = MessageId::new("msg-1")?;
//! assert_eq!(chat.as_str(), "#rust");
//! assert!(MessageId::new("").is_err());
//! # let _ = (author, message);
//! # Ok::<(), bridgekit::ids::InvalidId>(())
//! ```
//!
//! Passing the wrong kind does not compile:
//!
//! ```compile_fail
//! use bridgekit::ids::{MessageId, RemoteUserId};
//! fn author(_: &RemoteUserId) {}
//! author(&MessageId::new("msg-1").unwrap());
//! ```

mod localpart;

pub use localpart::{escape_localpart, percent_encode, unescape_localpart};

/// An ID that breaks the rules of its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    /// Which kind of ID (`chat ID`, `message ID`, …).
    pub kind: &'static str,
    /// The offending value (cut to 100 bytes).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn check(kind: &'static str, value: &str, may_be_empty: bool) -> Result<(), InvalidId> {
    let reason = if value.is_empty() && !may_be_empty {
        "it is empty"
    } else if value.contains('\0') {
        "it contains a NUL character"
    } else {
        return Ok(());
    };
    let mut cut = value.len().min(100);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    Err(InvalidId {
        kind,
        value: value[..cut].to_owned(),
        reason,
    })
}

macro_rules! remote_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, may_be_empty = $empty:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        /// Read as the bare string, and checked like [`new`](Self::new).
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            /// Checks `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                check($kind, &value, $empty)?;
                Ok(Self(value))
            }

            /// An ID written in the source (tests, constants). Panics if it is invalid.
            #[track_caller]
            pub fn from_static(value: &'static str) -> Self {
                match Self::new(value) {
                    Ok(id) => id,
                    Err(e) => panic!("{e}"),
                }
            }

            /// The ID as the network spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The ID as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

remote_id!(
    /// A chat (channel, group, direct conversation) on the remote network.
    ChatId, "chat ID", may_be_empty = false
);
remote_id!(
    /// A user of the remote network.
    RemoteUserId, "remote user ID", may_be_empty = false
);
remote_id!(
    /// A message on the remote network, unique within its chat.
    MessageId, "message ID", may_be_empty = false
);
remote_id!(
    /// One part of a remote message (a caption and its image, say); empty for the only part,
    /// which is what [`PartId::only`] and [`PartId::default`] give.
    PartId, "part ID", may_be_empty = true
);
remote_id!(
    /// One login of a Matrix user into the remote network (their account there).
    LoginId, "login ID", may_be_empty = false
);
remote_id!(
    /// An ID a bridge passes to its network with a message it sends, and gets back when the
    /// network reports that message, so the framework recognises the echo of a message it
    /// bridged (see [`MatrixMessage::txn_id`](crate::MatrixMessage::txn_id)).
    RemoteTxnId, "transaction ID", may_be_empty = false
);

impl PartId {
    /// The only part of a single-part message.
    pub fn only() -> Self {
        Self(String::new())
    }

    /// Whether this names the only part.
    pub fn is_only(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for PartId {
    fn default() -> Self {
        Self::only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_serialize_as_bare_strings() {
        assert_eq!(
            ChatId::new("").unwrap_err().to_string(),
            "invalid chat ID \"\": it is empty"
        );
        assert!(MessageId::new("a\0b").is_err());
        assert!(PartId::new("").unwrap().is_only());
        let id = RemoteUserId::new("ferris").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"ferris\"");
        let back: RemoteUserId = serde_json::from_str("\"ferris\"").unwrap();
        assert_eq!(back, id);
        assert!(
            serde_json::from_str::<MessageId>("\"\"").is_err(),
            "checked when read"
        );
        assert!(serde_json::from_str::<PartId>("\"\"").unwrap().is_only());
        assert_eq!(id, "ferris");
        let long = "é".repeat(80);
        assert!(MessageId::new(format!("{long}\0")).unwrap_err().value.len() <= 100);
    }
}
