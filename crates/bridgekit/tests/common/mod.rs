//! A fake homeserver and a way to run a bridge in-process against it.
//!
//! The fake answers the startup ping by calling the bridge back, accepts registrations, joins
//! and profile changes, and records sends with Synapse's idempotency scope (per appservice
//! and request path, not per ghost: docs/homeserver-behaviour.md §2). Faults can be scripted per send attempt,
//! and the whole server can be taken down (connection refused) and brought back.
#![allow(dead_code)]

pub mod postgres;

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bridgekit::ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};
use bridgekit::{Bridge, BridgeContext, BridgeError, Config, Registration, async_trait};
use serde_json::{Value, json};

/// What the fake does to one send attempt.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and an `M_UNKNOWN` body.
    Status(u16),
    /// 429 with `Retry-After: secs` and a `retry_after_ms` that disagrees (the header wins).
    RateLimit { secs: u64 },
    /// Wait this long before answering normally (longer than the client's timeout).
    Delay(Duration),
}

#[derive(Default)]
pub struct FakeState {
    pub as_url: String,
    pub hs_token: String,
    pub ping_answer: Option<(u16, Value)>,
    pub faults: Mutex<VecDeque<Fault>>,
    /// Event IDs by request path (the idempotency scope).
    pub by_path: Mutex<HashMap<String, String>>,
    /// (room, sender, body) of each distinct send, in arrival order.
    pub sent: Mutex<Vec<(String, String, String)>>,
    /// (event type, content) of each distinct send, in arrival order.
    pub events: Mutex<Vec<(String, Value)>>,
    pub attempts: Mutex<Vec<std::time::Instant>>,
    pub joins: Mutex<Vec<String>>,
    /// Rooms whose sends answer 503 until removed.
    pub blocked_rooms: Mutex<std::collections::HashSet<String>>,
    /// Users whose sends are refused with 403 "not in room" (as Synapse does for a while
    /// after a join, docs/homeserver-behaviour.md §3) until removed.
    pub not_in_room: Mutex<std::collections::HashSet<String>>,
    /// How many `org.matrix.dummy_event`s arrived (they take no fault and are not in `sent`).
    pub dummy_events: std::sync::atomic::AtomicUsize,
    /// How many profile writes arrived.
    pub profile_writes: std::sync::atomic::AtomicUsize,
}

pub struct FakeHomeserver {
    pub port: u16,
    pub state: web::Data<FakeState>,
    handle: Mutex<Option<ServerHandle>>,
}

async fn ping(hs: web::Data<FakeState>, body: web::Json<Value>) -> HttpResponse {
    if let Some((status, answer)) = &hs.ping_answer {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(*status).unwrap())
            .json(answer);
    }
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/app/v1/ping", hs.as_url))
        .bearer_auth(&hs.hs_token)
        .json(&json!({"transaction_id": body["transaction_id"]}))
        .send()
        .await
        .unwrap();
    if r.status() == 200 {
        HttpResponse::Ok().json(json!({"duration_ms": 1}))
    } else {
        HttpResponse::BadGateway()
            .json(json!({"errcode": "M_BAD_STATUS", "status": r.status().as_u16()}))
    }
}

async fn ok(_: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(json!({}))
}

async fn profile(hs: web::Data<FakeState>) -> HttpResponse {
    hs.profile_writes
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    HttpResponse::Ok().json(json!({}))
}

async fn register(body: web::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().json(
        json!({"user_id": format!("@{}:localhost", body["username"].as_str().unwrap_or("x"))}),
    )
}

async fn join(hs: web::Data<FakeState>, room: web::Path<String>) -> HttpResponse {
    hs.joins.lock().unwrap().push(room.clone());
    HttpResponse::Ok().json(json!({"room_id": room.into_inner()}))
}

fn user_of(req: &HttpRequest) -> String {
    req.query_string()
        .split('&')
        .find_map(|p| p.strip_prefix("user_id="))
        .map(|u| u.replace("%40", "@").replace("%3A", ":"))
        .unwrap_or_else(|| "bot".into())
}

async fn send(
    hs: web::Data<FakeState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Json<Value>,
) -> HttpResponse {
    if path.1 == "org.matrix.dummy_event" {
        hs.dummy_events
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return HttpResponse::Ok().json(json!({"event_id": "$dummy"}));
    }
    if hs.not_in_room.lock().unwrap().contains(&user_of(&req)) {
        return HttpResponse::Forbidden().json(json!({
            "errcode": "M_FORBIDDEN",
            "error": format!("User {} not in room {} (None)", user_of(&req), path.0),
        }));
    }
    hs.attempts.lock().unwrap().push(std::time::Instant::now());
    let fault = hs.faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Status(status)) => {
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .json(json!({"errcode": "M_UNKNOWN", "error": "injected"}));
        }
        Some(Fault::RateLimit { secs }) => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", secs.to_string()))
                .json(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1}));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let (room, event_type, _) = path.into_inner();
    if hs.blocked_rooms.lock().unwrap().contains(&room) {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"errcode": "M_UNKNOWN", "error": "room blocked"}));
    }
    let key = req.path().to_owned();
    let mut by_path = hs.by_path.lock().unwrap();
    let n = by_path.len();
    let event_id = by_path.entry(key).or_insert_with(|| {
        let body_text = body["body"].as_str().unwrap_or("").to_owned();
        hs.sent
            .lock()
            .unwrap()
            .push((room.clone(), user_of(&req), body_text));
        hs.events.lock().unwrap().push((event_type, body.0.clone()));
        format!("$ev{n}")
    });
    HttpResponse::Ok().json(json!({"event_id": event_id}))
}

impl FakeHomeserver {
    pub fn new(state: FakeState, port: u16) -> Arc<Self> {
        let hs = Arc::new(Self {
            port,
            state: web::Data::new(state),
            handle: Mutex::default(),
        });
        hs.up();
        hs
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts serving (again) on the same port.
    pub fn up(&self) {
        let data = self.state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/_matrix/client/v1/appservice/{id}/ping",
                    web::post().to(ping),
                )
                .route("/_matrix/client/v3/register", web::post().to(register))
                .route("/_matrix/client/v3/rooms/{room}/join", web::post().to(join))
                .route("/_matrix/client/v3/rooms/{room}/invite", web::post().to(ok))
                .route(
                    "/_matrix/client/v3/profile/{user}/displayname",
                    web::put().to(profile),
                )
                .route(
                    "/_matrix/client/v3/profile/{user}/avatar_url",
                    web::put().to(profile),
                )
                .route(
                    "/_matrix/client/v3/rooms/{room}/send/{type}/{txn}",
                    web::put().to(send),
                )
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", self.port))
        .unwrap()
        .run();
        *self.handle.lock().unwrap() = Some(server.handle());
        tokio::spawn(server);
    }

    /// Stops serving: connections are refused until [`up`](Self::up).
    pub async fn down(&self) {
        let handle = self.handle.lock().unwrap().take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }

    pub fn sent(&self) -> Vec<(String, String, String)> {
        self.state.sent.lock().unwrap().clone()
    }

    pub fn fault(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }
}

/// A bridge that hands its context to the test and records what it is handed.
#[derive(Clone, Default)]
pub struct Capture {
    pub ctx: Arc<OnceLock<BridgeContext>>,
    pub seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Capture {
    /// The IDs of the events handed over so far, in order.
    pub fn event_ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e, _)| e.clone())
            .collect()
    }
}

#[async_trait]
impl Bridge for Capture {
    async fn start(&self, ctx: &BridgeContext) -> Result<(), BridgeError> {
        let _ = self.ctx.set(ctx.clone());
        Ok(())
    }

    async fn handle_event(
        &self,
        _ctx: &BridgeContext,
        event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        let body = match &event {
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(m),
            )) => m.content.body().to_owned(),
            _ => String::new(),
        };
        self.seen.lock().unwrap().push((
            event.room_id().to_string(),
            event.event_id().to_string(),
            body.clone(),
        ));
        if body == "fail" {
            return Err("this handler fails on purpose".into());
        }
        // "echo: x" is answered by ghost "g" with "x", with a txnId derived from the event,
        // while the event is handled (as `apply_remote_event` sends).
        if let Some(answer) = body.strip_prefix("echo: ") {
            let content =
                bridgekit::ruma::events::room::message::RoomMessageEventContent::text_plain(answer);
            let send = bridgekit::Outgoing::message(event.room_id(), &content)?
                .txn_id(bridgekit::TxnIds::derived(&[event.event_id().as_str()]));
            _ctx.ghost(&bridgekit::RemoteUserId::from_static("g"))
                .submit(send)
                .await?;
        }
        Ok(())
    }

    /// Never called: `handle_event` above takes every event raw.
    async fn handle_message(
        &self,
        _ctx: &BridgeContext,
        _message: bridgekit::MatrixMessage,
    ) -> Result<bridgekit::Sent, BridgeError> {
        Ok(bridgekit::Sent::pending())
    }
}

/// A config, a registration and a fake homeserver in a temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub hs: Arc<FakeHomeserver>,
    pub as_url: String,
    pub hs_token: String,
}

pub struct RunningBridge {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), bridgekit::RunError>>,
}

impl RunningBridge {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

impl Harness {
    pub async fn new(extra_homeserver_keys: &str, ping_answer: Option<(u16, Value)>) -> Self {
        Self::with_config(extra_homeserver_keys, "", ping_answer).await
    }

    /// Like [`Harness::new`], with more top-level config (YAML lines).
    pub async fn with_config(
        extra_homeserver_keys: &str,
        extra_config: &str,
        ping_answer: Option<(u16, Value)>,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let (as_port, hs_port) = (free_port(), free_port());
        let as_url = format!("http://127.0.0.1:{as_port}");
        let text = format!(
            "homeserver: {{url: 'http://127.0.0.1:{hs_port}', server_name: localhost, startup_timeout_secs: 2{extra_homeserver_keys}}}\n\
             appservice: {{id: t, listen: '127.0.0.1:{as_port}', bot: tbot, registration: reg.yaml}}\n\
             store: {{path: store}}\n{extra_config}"
        );
        let config = Config::parse(&text, &dir.path().join("config.yaml"), &|_| None).unwrap();
        let registration = Registration::generate(&config, vec![]);
        registration
            .write(&config.appservice.registration, false)
            .unwrap();
        let state = FakeState {
            as_url: as_url.clone(),
            hs_token: registration.hs_token.clone(),
            ping_answer,
            ..FakeState::default()
        };
        let hs = FakeHomeserver::new(state, hs_port);
        Harness {
            dir,
            config,
            hs,
            as_url,
            hs_token: registration.hs_token,
        }
    }

    /// Runs `bridge` until stopped; waits until it is ready or has failed.
    pub async fn run(&self, bridge: impl Bridge) -> RunningBridge {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bridgekit::run_until(bridge, self.config.clone(), async {
            let _ = stopped.await;
        }));
        self.wait_ready(stop, task).await
    }

    /// Runs `bridge` on `store` instead of the configured one.
    pub async fn run_with_store(
        &self,
        bridge: impl Bridge,
        store: Arc<dyn bridgekit::store::Backend>,
    ) -> RunningBridge {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bridgekit::run_with_store(
            bridge,
            self.config.clone(),
            store,
            async {
                let _ = stopped.await;
            },
        ));
        self.wait_ready(stop, task).await
    }

    async fn wait_ready(
        &self,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), bridgekit::RunError>>,
    ) -> RunningBridge {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if task.is_finished() {
                break;
            }
            if let Ok(r) = http
                .get(format!("{}/health/ready", self.as_url))
                .send()
                .await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RunningBridge {
            stop: Some(stop),
            task,
        }
    }

    pub async fn push(&self, txn_id: &str, body: &Value) -> u16 {
        reqwest::Client::new()
            .put(format!(
                "{}/_matrix/app/v1/transactions/{txn_id}",
                self.as_url
            ))
            .bearer_auth(&self.hs_token)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn msg(room: &str, id: &str, sender: &str, body: &str) -> Value {
    json!({"event_id": id, "room_id": room, "sender": sender, "type": "m.room.message",
           "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body}})
}

pub async fn wait_until(what: &str, secs: u64, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends waiting in the outbox.
pub async fn outbox_depth(ctx: &bridgekit::BridgeContext) -> u64 {
    ctx.queue_stats().await.unwrap().outbox_depth
}

/// Waits (up to `secs`) until the outbox is empty.
pub async fn wait_for_empty_outbox(ctx: &bridgekit::BridgeContext, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while outbox_depth(ctx).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for an empty outbox"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bridge's `/metrics` exposition text.
pub async fn scrape_metrics(as_url: &str) -> String {
    reqwest::get(format!("{as_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series (name with labels, exactly as exposed) in `text`.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}
