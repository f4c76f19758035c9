//! End-to-bridge encryption for bridgekit: the bot's Olm/Megolm device.
//!
//! This crate wraps [matrix-sdk-crypto](https://docs.rs/matrix-sdk-crypto/0.18) (never
//! hand-written Olm) behind a boundary of JSON strings and [`http`] types, so that its ruma
//! version never meets bridgekit's. bridgekit turns it on with its `encryption` feature; a
//! bridge author never uses it directly.
//!
//! - [`Machine`] is the device: [`Machine::receive`] takes a transaction's to-device events,
//!   device-list changes and one-time-key counts, [`Machine::decrypt`] opens room events,
//!   [`Machine::encrypt`] seals outgoing ones after sharing the room key.
//! - [`KeyValue`] is where its state lives (the bridge's store); [`Transport`] sends its HTTP
//!   requests (the bridge's client).

mod machine;
mod pickle;
mod store;
mod transport;

pub use machine::{DecryptError, Decrypted, Machine, MachineConfig, SyncChanges};
pub use pickle::PickleKey;
pub use store::{Batch, BoxError, KeyValue};
pub use transport::Transport;

/// Why the machine could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The configuration or an argument is wrong.
    #[error("{0}")]
    Config(String),
    /// The crypto state could not be read or saved.
    #[error("crypto store: {0}")]
    Store(String),
    /// A request could not be built, sent or read.
    #[error("homeserver request failed: {0}")]
    Request(String),
    /// The homeserver answered with an error.
    #[error("the homeserver refused {path}: {status} {errcode} {error}")]
    Refused {
        /// The request's path, when known.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The Matrix error code.
        errcode: String,
        /// The homeserver's message.
        error: String,
    },
}

impl CryptoError {
    /// Names the request a refusal answered.
    pub(crate) fn at(self, request_path: &str) -> Self {
        match self {
            Self::Refused {
                status,
                errcode,
                error,
                ..
            } => Self::Refused {
                path: request_path.to_owned(),
                status,
                errcode,
                error,
            },
            other => other,
        }
    }
}
