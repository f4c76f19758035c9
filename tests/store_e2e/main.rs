//! Crash safety under load: the echo bridge is SIGKILLed again and again while a fake
//! homeserver pushes transactions at it like Synapse (one in flight, retried until 200).
//! Afterwards every event was echoed exactly once, every acknowledged transaction is still
//! recognised as a retry, and every mapping is in the store, on sled and on PostgreSQL.

#[path = "../../crates/bridgekit/tests/common/postgres.rs"]
mod postgres;
mod standby;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actix_web::web::Data;
use bridgekit::ruma::{EventId, RoomId};
use bridgekit::store::Backend;
use bridgekit::{MessageId, PartId};
use loadgen::fake_hs::{FakeState, serve};

const EVENTS: usize = 1500;
const BATCH: usize = 25;
const ROOMS: usize = 10;
/// SIGKILL after every this many transactions.
const KILL_EVERY: usize = 8;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Bridge {
    config: std::path::PathBuf,
    child: Option<Child>,
    /// Extra environment (config overrides).
    env: Vec<(String, String)>,
}

impl Bridge {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_echo-bridge"))
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            assert!(status.success(), "a graceful stop exits 0, got {status}");
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
    }
}

fn transaction_body(first: usize) -> String {
    let events: Vec<String> = (first..(first + BATCH).min(EVENTS))
        .map(|i| {
            format!(
                r#"{{"event_id":"$e{i}","room_id":"!r{}:localhost","sender":"@u{}:localhost","type":"m.room.message","origin_server_ts":1,"content":{{"msgtype":"m.text","body":"e{i}"}}}}"#,
                i % ROOMS,
                i % 7
            )
        })
        .collect();
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

/// Pushes one transaction until the bridge answers 200 (as Synapse does, without backoff).
async fn push(http: &reqwest::Client, url: &str, hs_token: &str, txn: usize, body: &str) -> u32 {
    let mut failures = 0;
    loop {
        let r = http
            .put(format!("{url}/_matrix/app/v1/transactions/{txn}"))
            .bearer_auth(hs_token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => return failures,
            _ => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn metric(http: &reqwest::Client, url: &str, line_start: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{url}/health/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "the bridge did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Loads the config at `config_path`, writes its registration, and starts a fake homeserver
/// on `listener` pushing to `as_url`. Returns the config, the homeserver's token, the fake's
/// state and its server.
fn start_homeserver(
    config_path: &Path,
    as_url: &str,
    listener: std::net::TcpListener,
) -> (
    bridgekit::Config,
    String,
    Data<FakeState>,
    actix_web::dev::ServerHandle,
) {
    let config = bridgekit::Config::load(config_path).unwrap();
    let registration = bridgekit::Registration::generate(&config, vec![]);
    registration
        .write(&config.appservice.registration, true)
        .unwrap();
    let state = Data::new(FakeState::new(
        EVENTS,
        as_url.to_owned(),
        registration.hs_token.clone(),
    ));
    let server = serve(state.clone(), listener).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    (config, registration.hs_token, state, handle)
}

/// The tests take turns: each wants both cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fake homeserver, the echo bridge's config and process, and a client to push with.
struct Rig {
    state: Data<FakeState>,
    server: actix_web::dev::ServerHandle,
    bridge: Bridge,
    http: reqwest::Client,
    url: String,
    hs_token: String,
    config: bridgekit::Config,
}

impl Rig {
    async fn start(store_yaml: &str, dir: &Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let as_port = free_port();
        let hs_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hs_url = format!("http://{}", hs_listener.local_addr().unwrap());
        let config_path = dir.join("config.yaml");
        std::fs::write(
            &config_path,
            format!(
                "homeserver: {{url: '{hs_url}', server_name: localhost}}\n\
                 appservice: {{id: echo, listen: '127.0.0.1:{as_port}', bot: echobot, registration: registration.yaml}}\n\
                 {store_yaml}\nlogging: {{level: warn}}\n"
            ),
        )
        .unwrap();
        let url = format!("http://127.0.0.1:{as_port}");
        let (config, hs_token, state, server_handle) =
            start_homeserver(&config_path, &url, hs_listener);
        let mut rig = Rig {
            state,
            server: server_handle,
            bridge: Bridge {
                config: config_path,
                child: None,
                env: Vec::new(),
            },
            http: reqwest::Client::new(),
            url,
            hs_token,
            config,
        };
        rig.bridge.start();
        wait_ready(&rig.http, &rig.url).await;
        rig
    }

    /// Pushes the transactions carrying `events`; with `kill_every`, SIGKILLs the bridge
    /// right after every that many acknowledgements (0–40 ms later, the moment an ack that
    /// was not durable would show) and restarts it. Returns (pushes refused, kills).
    async fn push(
        &mut self,
        events: std::ops::Range<usize>,
        kill_every: Option<usize>,
    ) -> (u32, u32) {
        let (mut refused, mut kills) = (0, 0);
        for first in events.step_by(BATCH) {
            let txn = first / BATCH;
            let now = self.state.now_ns();
            for i in first..(first + BATCH).min(EVENTS) {
                self.state.pushed_at[i].store(now, Relaxed);
            }
            let body = transaction_body(first);
            refused += push(&self.http, &self.url, &self.hs_token, txn, &body).await;
            if kill_every.is_some_and(|every| txn % every == every - 1) {
                tokio::time::sleep(Duration::from_millis((txn as u64 * 13) % 41)).await;
                self.bridge.kill();
                kills += 1;
                self.bridge.start();
            }
        }
        (refused, kills)
    }

    /// Waits until the first `n` events were echoed, then checks each exactly once.
    async fn expect_echoed_once(&self, n: usize) {
        expect_echoed_once(&self.state, n).await;
    }

    /// Pushes the transactions of `events` again and checks each is taken for a retry.
    async fn expect_retries_recognised(&self, events: std::ops::Range<usize>) {
        wait_ready(&self.http, &self.url).await;
        let key = r#"bridgekit_transactions_total{outcome="duplicate"}"#;
        let before = metric(&self.http, &self.url, key).await;
        let echoed = self.state.echoed.load(Relaxed);
        let transactions = events.clone().step_by(BATCH).count();
        for first in events.step_by(BATCH) {
            let body = transaction_body(first);
            push(&self.http, &self.url, &self.hs_token, first / BATCH, &body).await;
        }
        let after = metric(&self.http, &self.url, key).await;
        assert_eq!(
            (after - before) as usize,
            transactions,
            "every retry recognised"
        );
        assert_eq!(
            self.state.echoed.load(Relaxed),
            echoed,
            "retries bridged nothing"
        );
    }

    /// Stops the bridge gracefully and opens its store.
    async fn stop_and_open_store(mut self) -> Arc<dyn Backend> {
        self.bridge.terminate();
        self.server.stop(false).await;
        bridgekit::store::open(&self.config.store.location)
            .await
            .unwrap()
    }
}

/// Waits until the first `n` events were echoed, then checks each exactly once.
async fn expect_echoed_once(state: &FakeState, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while (state.echoed.load(Relaxed) as usize) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events were echoed",
            state.echoed.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let late repeats show
    let echoes = &state.echoes[..n];
    assert_eq!(
        echoes.iter().filter(|e| e.load(Relaxed) == 0).count(),
        0,
        "lost"
    );
    assert_eq!(
        echoes.iter().filter(|e| e.load(Relaxed) > 1).count(),
        0,
        "echoed twice"
    );
    assert_eq!(state.duplicated.load(Relaxed), 0);
    assert_eq!(state.swallowed.load(Relaxed), 0);
}

async fn crash_repeatedly_under_load(store_yaml: &str, dir: &Path) -> Arc<dyn Backend> {
    let _turn = SERIAL.lock().await;
    let mut rig = Rig::start(store_yaml, dir).await;
    let (refused, kills) = rig.push(0..EVENTS, Some(KILL_EVERY)).await;
    assert!(
        kills >= 6 && refused > 0,
        "{kills} kills, {refused} refused pushes"
    );
    rig.expect_echoed_once(EVENTS).await;
    rig.expect_retries_recognised(0..EVENTS).await;
    eprintln!(
        "crash test: {kills} SIGKILLs, {refused} refused pushes, {EVENTS} events echoed once each"
    );
    rig.stop_and_open_store().await
}

async fn every_mapping_is_there(store: &dyn Backend, events: usize) {
    for i in 0..events {
        let room = RoomId::parse(format!("!r{}:localhost", i % ROOMS)).unwrap();
        let source = EventId::parse(format!("$e{i}")).unwrap();
        let mapping = store
            .message_by_event(&source)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no mapping for $e{i}"));
        assert_eq!(mapping.room_id, room);
        let echo = store
            .message_by_remote(
                &room,
                &MessageId::new(format!("{}.echo", mapping.remote_id)).unwrap(),
                &PartId::only(),
            )
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no mapping for the echo of $e{i}"));
        assert_eq!(echo.event_id.as_str(), format!("$echo{i}"));
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.inbox_depth, stats.outbox_depth),
        (0, 0),
        "nothing left over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = crash_repeatedly_under_load("store: {path: store}", dir.path()).await;
    every_mapping_is_there(&*store, EVENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = &postgres::cluster().url;
    let schema = postgres::fresh_schema("crash");
    let yaml = format!("store: {{postgres_url: '{url}', postgres_schema: {schema}}}");
    let store = crash_repeatedly_under_load(&yaml, dir.path()).await;
    every_mapping_is_there(&*store, EVENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_running_bridge_from_sled_to_postgres() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let half = EVENTS / 2;
    let mut rig = Rig::start("store: {path: store}", dir.path()).await;
    rig.push(0..half, None).await;
    rig.expect_echoed_once(half).await;
    rig.bridge.terminate();

    let url = postgres::cluster().url.clone();
    let schema = postgres::fresh_schema("migrated");
    let config_path = rig.bridge.config.clone();
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_echo-bridge"))
            .arg("--config")
            .arg(&config_path)
            .args(["migrate-store", "--to-postgres", &url, "--schema", &schema])
            .output()
            .unwrap()
    };
    let out = migrate();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each event has two mappings: the Matrix message and its echo.
    assert!(
        stdout.contains(&format!("copied {} messages", 2 * half)),
        "{stdout}"
    );
    assert!(stdout.contains("next: set store.postgres_url"), "{stdout}");

    // The operator points the config at PostgreSQL (here through the environment).
    rig.bridge.env = vec![
        ("BRIDGEKIT_STORE_POSTGRES_URL".into(), url.clone()),
        ("BRIDGEKIT_STORE_POSTGRES_SCHEMA".into(), schema.clone()),
    ];
    rig.config.store.location = bridgekit::store::StoreLocation::Postgres {
        url: url.clone(),
        schema: schema.clone(),
    };
    rig.bridge.start();
    // The transaction record came along: what sled acknowledged is still a retry.
    rig.expect_retries_recognised(0..half).await;
    rig.push(half..EVENTS, None).await;
    rig.expect_echoed_once(EVENTS).await;

    // A target that holds records is refused, and says so.
    rig.bridge.terminate();
    let again = migrate();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    let store = rig.stop_and_open_store().await;
    assert_eq!(store.backend(), "postgres");
    every_mapping_is_there(&*store, EVENTS).await;
}
