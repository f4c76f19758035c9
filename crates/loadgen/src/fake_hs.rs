//! The fake homeserver's Client-Server side: it answers what a bridge calls (ping, register,
//! join, profile, send), and matches every echo to its source event. Sends are deduplicated
//! by request path only, as Synapse does for appservices (docs/homeserver-behaviour.md §2), so a txnId reused
//! by two ghosts shows up as a swallowed event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// What the fake knows and has seen.
pub struct FakeState {
    pub as_url: String,
    pub hs_token: String,
    pub epoch: Instant,
    /// When each source event was pushed (ns since `epoch`; 0 = not yet).
    pub pushed_at: Vec<AtomicU64>,
    /// How many distinct echo events each source got.
    pub echoes: Vec<AtomicU32>,
    /// Latency of each first echo, ns.
    pub latency: Vec<AtomicU64>,
    pub echoed: AtomicU64,
    /// When the last first-echo arrived, ns since `epoch`.
    pub last_echo_ns: AtomicU64,
    pub duplicated: AtomicU64,
    pub swallowed: AtomicU64,
    /// While set, every Client-Server call answers 503 (a homeserver outage).
    pub outage: std::sync::atomic::AtomicBool,
    by_path: Mutex<HashMap<String, u64>>,
}

impl FakeState {
    pub fn new(events: usize, as_url: String, hs_token: String) -> Self {
        Self {
            as_url,
            hs_token,
            epoch: Instant::now(),
            pushed_at: (0..events).map(|_| AtomicU64::new(0)).collect(),
            echoes: (0..events).map(|_| AtomicU32::new(0)).collect(),
            latency: (0..events).map(|_| AtomicU64::new(0)).collect(),
            echoed: AtomicU64::new(0),
            last_echo_ns: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            swallowed: AtomicU64::new(0),
            outage: Default::default(),
            by_path: Mutex::default(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

type State = web::Data<FakeState>;

async fn ping(hs: State, body: web::Json<Value>) -> HttpResponse {
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/app/v1/ping", hs.as_url))
        .bearer_auth(&hs.hs_token)
        .json(&json!({"transaction_id": body["transaction_id"]}))
        .send()
        .await;
    match r {
        Ok(r) if r.status() == 200 => HttpResponse::Ok().json(json!({"duration_ms": 1})),
        _ => HttpResponse::BadGateway()
            .json(json!({"errcode": "M_CONNECTION_FAILED", "error": "ping failed"})),
    }
}

async fn empty() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}

async fn register(body: web::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().json(
        json!({"user_id": format!("@{}:localhost", body["username"].as_str().unwrap_or("x"))}),
    )
}

async fn join(room: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"room_id": room.into_inner()}))
}

async fn displayname(user: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"displayname": user.trim_start_matches('@').split(':').next()}))
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .json(json!({"errcode": "M_UNKNOWN", "error": "homeserver outage (simulated)"}))
}

async fn send(hs: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if hs.outage.load(Relaxed) {
        return unavailable();
    }
    #[derive(serde::Deserialize)]
    struct Content<'a> {
        #[serde(borrow)]
        body: Option<&'a str>,
    }
    let n = serde_json::from_slice::<Content>(&body)
        .ok()
        .and_then(|c| c.body?.strip_prefix('e')?.parse::<u64>().ok())
        .filter(|n| (*n as usize) < hs.echoes.len());
    let Some(n) = n else {
        return HttpResponse::Ok().json(json!({"event_id": "$other"}));
    };
    {
        let mut by_path = hs.by_path.lock().unwrap();
        match by_path.get(req.path()) {
            Some(&first) if first == n => {
                return HttpResponse::Ok().json(json!({"event_id": format!("$echo{n}")}));
            }
            Some(_) => {
                // Synapse would answer with the first event's ID and drop this one.
                hs.swallowed.fetch_add(1, Relaxed);
                return HttpResponse::Ok().json(json!({"event_id": "$swallowed"}));
            }
            None => {
                by_path.insert(req.path().to_owned(), n);
            }
        }
    }
    let i = n as usize;
    if hs.echoes[i].fetch_add(1, Relaxed) == 0 {
        let now = hs.now_ns();
        let pushed = hs.pushed_at[i].load(Relaxed);
        hs.latency[i].store(now.saturating_sub(pushed), Relaxed);
        hs.echoed.fetch_add(1, Relaxed);
        hs.last_echo_ns.fetch_max(now, Relaxed);
    } else {
        hs.duplicated.fetch_add(1, Relaxed);
    }
    HttpResponse::Ok().json(json!({"event_id": format!("$echo{n}")}))
}

/// Serves the fake on `listener` (1 worker: it shares the 2 cores with the bridge).
pub fn serve(
    state: State,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route(
                "/_matrix/client/v1/appservice/{id}/ping",
                web::post().to(ping),
            )
            .route("/_matrix/client/v3/register", web::post().to(register))
            .route("/_matrix/client/v3/rooms/{room}/join", web::post().to(join))
            .route("/_matrix/client/v3/join/{room}", web::post().to(join))
            .route(
                "/_matrix/client/v3/rooms/{room}/invite",
                web::post().to(empty),
            )
            .route(
                "/_matrix/client/v3/profile/{user}/displayname",
                web::put().to(empty),
            )
            .route(
                "/_matrix/client/v3/profile/{user}/displayname",
                web::get().to(displayname),
            )
            .route(
                "/_matrix/client/v3/rooms/{room}/send/{type}/{txn}",
                web::put().to(send),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}
