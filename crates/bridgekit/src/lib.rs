//! # bridgekit
//!
//! A framework for Matrix application-service bridges: it serves the homeserver → appservice
//! API, records every transaction durably before acknowledging it, hands events to your bridge
//! in order per room, and sends as ghost users through the Client-Server API.
//!
//! A complete bridge that answers every message with a ghost's echo:
//!
//! ```no_run
//! use bridgekit::{Bridge, BridgeContext, BridgeError, MatrixMessage, MessageId, RemoteUserId, Sent, async_trait};
//! use bridgekit::ruma::events::room::message::RoomMessageEventContent;
//!
//! struct Parrot;
//!
//! #[async_trait]
//! impl Bridge for Parrot {
//!     async fn handle_message(&self, ctx: &BridgeContext, msg: MatrixMessage) -> Result<Sent, BridgeError> {
//!         let who = RemoteUserId::new(msg.origin.sender.localpart())?;
//!         let ghost = ctx.ghost(&who);
//!         ghost.set_displayname(&format!("{who} (parrot)")).await?;
//!         let echo = RoomMessageEventContent::text_plain(msg.content.body());
//!         ghost.send(&msg.origin.room_id, &echo).await?;
//!         // What the "network" made of the message: the framework records the mapping.
//!         Ok(Sent::message(MessageId::new(msg.origin.event_id.as_str())?))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     // `parrot --config config.yaml generate-registration`, then `parrot --config config.yaml`.
//!     bridgekit::cli::main(Parrot)
//! }
//! ```
//!
//! Everything else is a capability: override [`Bridge::handle_edit`],
//! [`Bridge::handle_reaction`], [`Bridge::handle_redaction`], [`Bridge::handle_membership`],
//! [`Bridge::handle_room_change`] and [`Bridge::handle_command`] as your network supports them
//! ([`incoming`] has what each receives, already resolved through the store). The other way,
//! [`BridgeContext::remote_event`] takes a [`RemoteEvent`] (a message, an edit, a reaction, a
//! new chat, …) and applies it as the right ghost, in order per portal ([`remote`]). Remote
//! IDs are typed ([`ids`]): a message ID cannot be passed where a user ID belongs.
//!
//! Encrypted rooms need nothing from a bridge: with `encryption.allow` (cargo feature
//! `encryption`, on by default) the framework decrypts events before your handlers see them
//! (marked [`MatrixOrigin::decrypted`]) and encrypts what you send into encrypted rooms
//! ([`BridgeContext::is_encrypted_room`] says which rooms are).
//!
//! With the cargo feature `jemalloc` (off by default; the example bridges turn it on),
//! bridgekit makes jemalloc the process's allocator: a bridge's memory then stays flat over
//! hours of traffic, where glibc's per-thread arenas kept growing (`docs/store-memory.md`).
//! Leave it off to choose an allocator yourself.
//!
//! Test a bridge in-process with the `bridgekit-testkit` crate: a fake homeserver that
//! behaves like Synapse towards an appservice, Matrix users to act in it, and a harness that
//! runs your bridge against it (`crates/testkit`, and `docs/writing-a-bridge.md` §13).
//!
//! The pieces, in the order data flows: [`appservice`] (HTTP edge) →
//! intake (durable record) → per-room dispatch → your [`Bridge`] → [`Intent`] (acting as a
//! ghost) → [`HomeserverClient`]. [`Store`] lies under all of them.

#![warn(missing_docs)]

pub mod appservice;
mod bridge;
pub mod cli;
pub mod client;
pub mod config;
mod context;
mod double_puppet;
#[cfg(feature = "encryption")]
mod encryption;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod housekeeping;
pub mod ids;
mod inbox_handler;
pub mod incoming;
mod intake;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod keyed_queue;
pub mod logins;
mod memory;
mod metrics;
mod provisioning;
pub mod registration;
pub mod remote;
mod room_order;
mod runtime;
pub mod startup_check;
pub mod store;

pub use async_trait::async_trait;
pub use bridge::{Bridge, BridgeError, ToDeviceEvent};
pub use client::{
    ClientError, CreateRoom, HomeserverClient, Intent, MessagesPage, Outgoing, PendingSend,
    RetryPolicy, TxnIds,
};
pub use config::{Config, ConfigError};
pub use context::BridgeContext;
pub use ids::{ChatId, InvalidId, LoginId, MessageId, PartId, RemoteTxnId, RemoteUserId};
pub use incoming::{
    CommandCall, CommandHelp, MatrixEdit, MatrixMembership, MatrixMessage, MatrixOrigin,
    MatrixReaction, MatrixRedaction, MatrixRoomChange, RedactedTarget, RetryLater, RoomChange,
    Sent, Unsupported,
};
pub use registration::Registration;
pub use remote::{ChatInfo, GhostEvent, RemoteContent, RemoteEvent, RemoteMessage, RemoteUser};
pub use ruma;
pub use runtime::{RunError, run, run_until, run_with_store};
pub use store::{
    GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, Store, StoreError, StoreExt,
};

/// jemalloc for the whole process, with the `jemalloc` feature (see the crate docs).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read by jemalloc itself at its first allocation (an operator's
/// `_RJEM_MALLOC_CONF` in the environment is applied after them): two arenas instead of four
/// per core, unused pages given back after one second instead of ten, by jemalloc's own
/// background thread. Measured in two-hour soaks and closed-loop echo runs
/// (`docs/store-memory.md`).
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: JemallocConf = JemallocConf(
    c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2"
        .as_ptr()
        .cast(),
);

/// A C string pointer that may live in a static.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct JemallocConf(*const u8);

// SAFETY: it points at a string literal that lives for ever and is never written.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for JemallocConf {}

/// Installs ring as rustls's crypto provider once (reqwest is built without a default one).
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
