//! # bridgekit-testkit
//!
//! Test a bridgekit bridge in-process, in well under a second, with no Synapse:
//!
//! - [`TestHomeserver`] behaves like Synapse towards an appservice: it keeps rooms with state,
//!   members and a timeline, serves the Client-Server calls an intent makes with Synapse's
//!   errcodes, reflects the bridge's own sends back as events, and pushes transactions one at
//!   a time. [`Fault`]s make it fail the way a real one does.
//! - [`MatrixUser`] acts in it as a real user would: creates rooms, invites, says things,
//!   edits, reacts, redacts.
//! - [`TestBridge`] runs your bridge against it — real listener, real sled store in a
//!   temporary directory — and stops or restarts it on the same store.
//! - [`ScriptedNetwork`] and [`LineServer`] stand in for the remote network; a scripted
//!   network keeps accounts too, to test a bridge's login flow.
//!
//! A test reads like the story it checks:
//!
//! ```no_run
//! use std::time::Duration;
//! use bridgekit::{Bridge, BridgeContext, BridgeError, MatrixMessage, MessageId, Sent, async_trait};
//! use bridgekit_testkit::{ScriptedNetwork, TestBridge, TestHomeserver};
//!
//! /// A bridge that hands every message's text to its network.
//! struct Relay(ScriptedNetwork<String>);
//!
//! #[async_trait]
//! impl Bridge for Relay {
//!     async fn handle_message(&self, _: &BridgeContext, m: MatrixMessage) -> Result<Sent, BridgeError> {
//!         let n = self.0.take(m.content.body().to_owned())?;
//!         Ok(Sent::message(MessageId::new(format!("m{n}"))?))
//!     }
//! }
//!
//! #[tokio::test]
//! async fn alice_is_heard() {
//!     let hs = TestHomeserver::start();
//!     let network = ScriptedNetwork::new();
//!     let bridge = TestBridge::start(&hs, Relay(network.clone())).await;
//!
//!     let alice = hs.user("alice");
//!     let room = alice.create_room();
//!     alice.invite(&room, bridge.bot_user_id().as_str());
//!     alice.say(&room, "hello");
//!
//!     let received = network.wait_received(1, Duration::from_secs(5)).await;
//!     assert_eq!(received, ["hello"]);
//! }
//! ```

mod bridge;
mod homeserver;
mod network;

pub use bridge::{TestBridge, TestBridgeBuilder};
pub use homeserver::{Fault, MatrixError, MatrixUser, RoomEvent, TestHomeserver};
pub use network::{LineServer, LoginRefused, NetworkDown, ScriptedNetwork};

/// A TCP port nobody listens on now (for a bridge's listener or a fake server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface has a free port")
}
