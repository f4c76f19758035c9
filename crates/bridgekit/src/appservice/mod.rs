//! The homeserver → appservice HTTP API (`/_matrix/app/v1`), on actix-web.
//!
//! Every route authenticates before reading the body. Transactions are answered `200` only
//! after the intake has made them durable; what the bridge does with them
//! happens afterwards and can never turn into an error the homeserver sees.

pub(crate) mod auth;
pub(crate) mod errors;
mod routes;
pub(crate) mod standby;
pub(crate) mod transaction;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::bridge::Bridge;
use crate::context::BridgeContext;
use crate::intake::Intake;

/// Largest transaction body accepted (413 above it). Synapse sends at most 100 events of
/// up to 64 KiB, 100 ephemeral events and 100 to-device messages per transaction
/// (docs/homeserver-behaviour.md §1): ~6.5 MB in practice, under 20 MB if every part were
/// at its limit. Refusing a real one would block the bridge forever, so the cap leaves a
/// wide margin over that, while a body near it still cannot take much memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Bodies at least this large give their memory back to the system once handled.
pub(crate) const LARGE_BODY_BYTES: usize = 1024 * 1024;

/// Most open connections to the appservice listener.
pub const MAX_CONNECTIONS: usize = 1024;

/// Time a client has to send its request line and headers.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the HTTP handlers share.
pub(crate) struct AppState {
    pub hs_token: String,
    pub intake: Intake,
    pub bridge: Arc<dyn Bridge>,
    pub ctx: BridgeContext,
    /// Set once startup finished; `/health/ready` reports it.
    pub ready: AtomicBool,
    /// The `transaction_id` of the last homeserver ping, to confirm the startup ping arrived.
    pub last_ping: std::sync::Mutex<Option<String>>,
    /// Whether transactions are being refused for a backlog (to log the change, not each
    /// retry).
    pub behind: AtomicBool,
    /// The provisioning API (`/_matrix/provision/v3`).
    pub provisioning: crate::provisioning::Provisioning,
}

/// Starts the HTTP server on `listener`; the returned server runs when awaited or spawned.
pub(crate) fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let data = actix_web::web::Data::from(state);
    // Synapse sends one transaction at a time, and handlers only hand off to the intake thread:
    // a second worker thread only adds context switches (measured: ingest 40k → 49k events/s).
    let workers = 1;
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .configure(routes::configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    // A homeserver opens a handful of connections; a flood of them is not a homeserver.
    .max_connections(MAX_CONNECTIONS)
    // A client must send its request head within this time, or the connection is closed.
    .client_request_timeout(HEADER_TIMEOUT)
    .client_disconnect_timeout(std::time::Duration::from_secs(5))
    .listen(listener)?
    .run())
}

/// The `key=value` pairs of a query string, percent-decoded.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

/// Decodes `%xx` escapes; invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
