//! The framework's own tests run against bridgekit-testkit's fake homeserver, as a bridge's
//! tests would. The fake answers the startup ping by calling the bridge back, accepts
//! registrations, joins and profile changes, and records sends with Synapse's idempotency
//! scope (per appservice and request path, not per ghost: docs/homeserver-behaviour.md §2).
//! Faults can be scripted per send attempt, and the whole server can be taken down
//! (connection refused) and brought back.
//!
//! These tests push hand-written transactions themselves, so the fake's rooms spring into
//! being when named and it pushes nothing on its own.
#![allow(dead_code)]

pub mod postgres;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bridgekit::ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};
use bridgekit::{Bridge, BridgeContext, BridgeError, Config, Registration, async_trait};
#[allow(unused_imports)]
pub use bridgekit_testkit::{Fault, TestHomeserver};
use serde_json::{Value, json};

/// What the legacy assertions read of the fake's record of sends.
pub trait SentLog {
    /// (room, sender, body) of each distinct send, in arrival order.
    fn sends(&self) -> Vec<(String, String, String)>;
    /// (event type, content) of each distinct send, in arrival order.
    fn sent_events(&self) -> Vec<(String, Value)>;
}

impl SentLog for TestHomeserver {
    fn sends(&self) -> Vec<(String, String, String)> {
        self.sent()
            .into_iter()
            .map(|e| {
                let body = e.body().unwrap_or("").to_owned();
                (e.room_id, e.sender, body)
            })
            .collect()
    }

    fn sent_events(&self) -> Vec<(String, Value)> {
        self.sent()
            .into_iter()
            .map(|e| (e.event_type, e.content))
            .collect()
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
    pub hs: Arc<TestHomeserver>,
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
        let hs = TestHomeserver::start();
        hs.open_rooms();
        hs.set_pushing(false);
        if let Some((status, body)) = ping_answer {
            hs.answer_ping_with(status, body);
        }
        let as_port = bridgekit_testkit::free_port();
        let as_url = format!("http://127.0.0.1:{as_port}");
        let text = format!(
            "homeserver: {{url: '{}', server_name: localhost, startup_timeout_secs: 2{extra_homeserver_keys}}}\n\
             appservice: {{id: t, listen: '127.0.0.1:{as_port}', bot: tbot, registration: reg.yaml}}\n\
             store: {{path: store}}\n{extra_config}",
            hs.url()
        );
        let config = Config::parse(&text, &dir.path().join("config.yaml"), &|_| None).unwrap();
        let registration = Registration::generate(&config, vec![]);
        registration
            .write(&config.appservice.registration, false)
            .unwrap();
        hs.register_appservice(
            &as_url,
            &registration.as_token,
            &registration.hs_token,
            &config.appservice.bot,
            &config.appservice.ghost_prefix,
        );
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

/// Pushes a transaction; its status and JSON body (null when not JSON).
pub async fn push_status(h: &Harness, txn: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/_matrix/app/v1/transactions/{txn}", h.as_url))
        .bearer_auth(&h.hs_token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
