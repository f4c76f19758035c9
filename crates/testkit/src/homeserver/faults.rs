//! Faults a test scripts into the fake homeserver, and what the fake counts of the bridge's
//! calls so a test can assert on them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::event::RoomEvent;

/// What the fake does to one message send attempt.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and an `M_UNKNOWN` body.
    Status(u16),
    /// 429 with `Retry-After: secs` and a `retry_after_ms` that disagrees (the header wins,
    /// as the spec says).
    RateLimit {
        /// Seconds in the `Retry-After` header.
        secs: u64,
    },
    /// Wait this long before answering normally (longer than the client's timeout, say).
    Delay(Duration),
}

/// Scripted misbehaviour.
#[derive(Default)]
pub(crate) struct Faults {
    /// One per message send attempt, in order.
    pub sends: VecDeque<Fault>,
    /// Users whose message sends are refused "not in room" (as Synapse does for a while after
    /// a join under load, docs/homeserver-behaviour.md §3).
    pub not_in_room: HashSet<String>,
    /// Rooms whose message sends answer 503.
    pub blocked_rooms: HashSet<String>,
    /// Answer the startup ping with this instead of pinging the appservice.
    pub ping_answer: Option<(u16, Value)>,
}

/// What the bridge did, as the fake saw it.
#[derive(Default)]
pub(crate) struct CallLog {
    /// Event IDs of sends and redactions by request path: Synapse's idempotency scope for an
    /// appservice (per path, not per ghost: docs/homeserver-behaviour.md §2).
    pub by_path: HashMap<String, String>,
    /// Every distinct message the appservice sent (dummy events aside), in order.
    pub sent: Vec<RoomEvent>,
    /// When each message send attempt arrived (after the membership check).
    pub attempts: Vec<Instant>,
    /// Rooms joined, one entry per join call.
    pub joins: Vec<String>,
    /// `org.matrix.dummy_event`s sent to merge a room's extremities.
    pub dummy_events: usize,
    /// Profile writes (displayname or avatar).
    pub profile_writes: usize,
    /// To-device messages: (event type, body).
    pub to_device: Vec<(String, Value)>,
    /// Transactions the appservice acknowledged.
    pub transactions_acked: usize,
}
