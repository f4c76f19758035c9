//! # bridgekit-testkit
//!
//! Test a bridgekit bridge in-process, with no Synapse: [`TestHomeserver`] behaves like
//! Synapse towards an appservice (it keeps rooms with state and members, serves the
//! Client-Server calls an intent makes with Synapse's errcodes, reflects the bridge's own
//! sends back as events, and pushes transactions one at a time), and [`MatrixUser`] acts in
//! it as a real user would.
//!
//! Work in progress: the harness that runs a bridge against it (`TestBridge`) and the
//! scripted remote network are not written yet.

mod homeserver;

pub use homeserver::{Fault, MatrixError, MatrixUser, RoomEvent, TestHomeserver};

/// A TCP port nobody listens on now (for a bridge's listener or a fake server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface has a free port")
}
