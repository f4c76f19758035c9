//! The framework over real HTTP, with a fake homeserver (it answers the startup ping by
//! calling the bridge back, and records joins) and a bridge that records what it is handed.
//! These check what the echo bridge's idempotent sends would hide: that each event reaches
//! the bridge exactly once and in order.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use bridgekit::ruma::events::{AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent};
use bridgekit::{Bridge, BridgeContext, BridgeError, Config, Registration, async_trait};
use serde_json::{Value, json};

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, String)>>,
}

/// The bridge under test; the test keeps the other handle on the recorder.
struct Probe(Arc<Recorder>);

#[async_trait]
impl Bridge for Probe {
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
        self.0
            .seen
            .lock()
            .unwrap()
            .push((event.room_id().to_string(), event.event_id().to_string()));
        if body == "fail" {
            return Err("this handler fails on purpose".into());
        }
        Ok(())
    }
}

struct FakeHomeserver {
    as_url: String,
    hs_token: String,
    ping_answer: Option<(u16, Value)>,
    joins: Mutex<Vec<String>>,
}

async fn ping(hs: web::Data<FakeHomeserver>, body: web::Json<Value>) -> HttpResponse {
    if let Some((status, answer)) = &hs.ping_answer {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(*status).unwrap())
            .json(answer);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
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

async fn join(hs: web::Data<FakeHomeserver>, room: web::Path<String>) -> HttpResponse {
    hs.joins.lock().unwrap().push(room.into_inner());
    HttpResponse::Ok().json(json!({"room_id": "!joined:localhost"}))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    as_url: String,
    hs_token: String,
    hs: web::Data<FakeHomeserver>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), bridgekit::RunError>>,
    _dir: tempfile::TempDir,
}

/// Starts a fake homeserver and the bridge; waits until the bridge is ready (or has failed).
async fn start(recorder: Arc<Recorder>, ping_answer: Option<(u16, Value)>) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (hs_port, as_port) = (free_port(), free_port());
    let text = format!(
        "homeserver: {{url: 'http://127.0.0.1:{hs_port}', server_name: localhost, startup_timeout_secs: 2}}\n\
         appservice: {{id: t, listen: '127.0.0.1:{as_port}', bot: tbot, registration: reg.yaml}}\n\
         store: {{path: store}}\n"
    );
    let config = Config::parse(&text, &dir.path().join("config.yaml"), &|_| None).unwrap();
    let registration = Registration::generate(&config, vec![]);
    registration
        .write(&config.appservice.registration, false)
        .unwrap();
    let as_url = format!("http://127.0.0.1:{as_port}");
    let hs = web::Data::new(FakeHomeserver {
        as_url: as_url.clone(),
        hs_token: registration.hs_token.clone(),
        ping_answer,
        joins: Mutex::default(),
    });
    let data = hs.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/_matrix/client/v1/appservice/{id}/ping",
                web::post().to(ping),
            )
            .route("/_matrix/client/v3/rooms/{room}/join", web::post().to(join))
    })
    .workers(1)
    .disable_signals()
    .listen(TcpListener::bind(("127.0.0.1", hs_port)).unwrap())
    .unwrap()
    .run();
    tokio::spawn(server);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bridgekit::run_until(Probe(recorder), config, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if task.is_finished() {
            break;
        }
        if let Ok(r) = http.get(format!("{as_url}/health/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        as_url,
        hs_token: registration.hs_token,
        hs,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Running {
    async fn push(&self, txn_id: &str, body: &Value) -> u16 {
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

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn msg(room: &str, id: &str, sender: &str, body: &str) -> Value {
    json!({"event_id": id, "room_id": room, "sender": sender, "type": "m.room.message",
           "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body}})
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_bridge_once_in_room_order() {
    let recorder = Arc::new(Recorder::default());
    let bridge = start(recorder.clone(), None).await;
    let a = "@alice:localhost";
    let txn = json!({"events": [
        msg("!a:localhost", "$a1", a, "1"), msg("!b:localhost", "$b1", a, "1"),
        msg("!a:localhost", "$a2", a, "fail"), msg("!a:localhost", "$a3", a, "3"),
        msg("!a:localhost", "$own", "@_t_ghost:localhost", "a ghost's own echo"),
        msg("!a:localhost", "$bot", "@tbot:localhost", "the bot's own echo"),
    ]});
    assert_eq!(
        bridge.push("7", &txn).await,
        200,
        "a failing handler never fails the transaction"
    );
    let (r1, r2, r3) = tokio::join!(
        bridge.push("7", &txn),
        bridge.push("7", &txn),
        bridge.push("7", &txn)
    );
    assert_eq!((r1, r2, r3), (200, 200, 200));
    let reused = json!({"events": [msg("!a:localhost", "$a4", a, "4")]});
    assert_eq!(bridge.push("7", &reused).await, 200);
    wait_until("all events", || recorder.seen.lock().unwrap().len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // let any duplicate show up
    let seen = recorder.seen.lock().unwrap().clone();
    let in_a: Vec<&str> = seen
        .iter()
        .filter(|(r, _)| r == "!a:localhost")
        .map(|(_, e)| e.as_str())
        .collect();
    assert_eq!(
        in_a,
        ["$a1", "$a2", "$a3", "$a4"],
        "once each, in order, own echoes filtered: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|(_, e)| e == "$b1").count(), 1);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_accepts_invites() {
    let recorder = Arc::new(Recorder::default());
    let bridge = start(recorder.clone(), None).await;
    let invite = json!({"events": [{
        "event_id": "$inv", "room_id": "!r:localhost", "sender": "@alice:localhost",
        "type": "m.room.member", "state_key": "@tbot:localhost", "origin_server_ts": 1,
        "content": {"membership": "invite"},
    }]});
    assert_eq!(bridge.push("1", &invite).await, 200);
    let hs = bridge.hs.clone();
    wait_until("the bot's join", || !hs.joins.lock().unwrap().is_empty()).await;
    assert_eq!(hs.joins.lock().unwrap().as_slice(), ["!r:localhost"]);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_failures_explain_the_fix() {
    let unknown_token = json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown access token"});
    let bridge = start(Arc::new(Recorder::default()), Some((401, unknown_token))).await;
    let err = bridge.task.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("app_service_config_files"), "{err}");

    let bad_hs_token =
        json!({"errcode": "M_BAD_STATUS", "status": 403, "body": "{}", "error": "x"});
    let bridge = start(Arc::new(Recorder::default()), Some((502, bad_hs_token))).await;
    let err = bridge.task.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("hs_token does not match"), "{err}");
}
