//! # bridgekit
//!
//! A framework for Matrix application-service bridges: it serves the homeserver → appservice
//! API, records every transaction durably before acknowledging it, hands events to your bridge
//! in order per room, and sends as ghost users through the Client-Server API.
//!
//! A complete bridge that answers every message with a ghost's echo:
//!
//! ```no_run
//! use bridgekit::{Bridge, BridgeContext, BridgeError, async_trait};
//! use bridgekit::ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};
//! use bridgekit::ruma::events::room::message::RoomMessageEventContent;
//!
//! struct Parrot;
//!
//! #[async_trait]
//! impl Bridge for Parrot {
//!     async fn handle_event(&self, ctx: &BridgeContext, event: AnyTimelineEvent) -> Result<(), BridgeError> {
//!         if let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(msg))) = event {
//!             let ghost = ctx.ghost(msg.sender.localpart());
//!             ghost.set_displayname(&format!("{} (parrot)", msg.sender.localpart())).await?;
//!             ghost.send(&msg.room_id, &RoomMessageEventContent::text_plain(msg.content.body())).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     // `parrot --config config.yaml generate-registration`, then `parrot --config config.yaml`.
//!     bridgekit::cli::main(Parrot)
//! }
//! ```
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
mod dispatch;
mod hash;
pub mod ids;
mod intake;
mod metrics;
pub mod registration;
mod router;
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
pub use registration::Registration;
pub use ruma;
pub use runtime::{RunError, run, run_until};
pub use store::{
    GhostRecord, MessageMapping, Portal, PortalKey, ReactionMapping, Store, StoreError, StoreExt,
};

/// Installs ring as rustls's crypto provider once (reqwest is built without a default one).
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
