//! Runs a throwaway Synapse (installed from PyPI by `tests/synapse/start.sh` into a cache
//! directory) and a real bridge binary, and acts as a Matrix user and as the homeserver
//! towards the bridge. Everything is torn down on drop, even after a failed assert.
//!
//! The including test crate says which bridge with a `fn bridge_spec() -> harness::Spec`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SYNAPSE_START: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/synapse/start.sh");
const SYNAPSE_STOP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/synapse/stop.sh");

/// Which bridge a test crate runs.
pub struct Spec {
    /// The binary (`env!("CARGO_BIN_EXE_…")`).
    pub binary: &'static str,
    /// The appservice ID, which also names the bot (`<id>bot`).
    pub id: &'static str,
    /// More config (YAML lines appended to the generated config).
    pub extra_config: String,
}

/// Tests share two cores and a Synapse each: run them one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A Synapse with the echo bridge registered, and the bridge process.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub hs_url: String,
    pub as_url: String,
    pub hs_token: String,
    pub bot: String,
    config: PathBuf,
    binary: &'static str,
    hs_port: u16,
    bridge: Option<Child>,
    pub http: reqwest::Client,
}

/// A bridge run in this process, with its context handed to the test.
pub struct InProcess {
    pub ctx: bridgekit::BridgeContext,
    /// What the bridge was handed, one line per call (see [`HandOver`]).
    pub seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), bridgekit::RunError>>,
}

impl InProcess {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Hands its context to the test and records each capability call as a line, with the
/// remote IDs the framework resolved. Messages are mapped (`mx:<event>`), so later edits,
/// reactions and redactions of them resolve.
#[derive(Clone, Default)]
struct HandOver(
    std::sync::Arc<std::sync::OnceLock<bridgekit::BridgeContext>>,
    Seen,
);

impl HandOver {
    fn record(&self, line: String) {
        self.1.lock().unwrap().push(line);
    }
}

type Result0 = Result<(), bridgekit::BridgeError>;

#[bridgekit::async_trait]
impl bridgekit::Bridge for HandOver {
    async fn start(&self, ctx: &bridgekit::BridgeContext) -> Result0 {
        let _ = self.0.set(ctx.clone());
        Ok(())
    }
    async fn handle_message(
        &self,
        ctx: &bridgekit::BridgeContext,
        m: bridgekit::MatrixMessage,
    ) -> Result<bridgekit::Sent, bridgekit::BridgeError> {
        let o = &m.origin;
        let _ = ctx;
        let id = bridgekit::MessageId::new(format!("mx:{}", o.event_id))?;
        let mut line = format!(
            "message {:?} reply_to={:?} thread={:?} portal={:?}",
            m.content.body(),
            m.reply_to.map(|r| r.remote_id.into_string()),
            m.thread_root.map(|r| r.remote_id.into_string()),
            o.portal.as_ref().map(|p| p.key.remote_id.to_string()),
        );
        if o.decrypted {
            line.push_str(" decrypted");
        }
        self.record(line);
        Ok(bridgekit::Sent::message(id))
    }
    async fn handle_edit(&self, _: &bridgekit::BridgeContext, e: bridgekit::MatrixEdit) -> Result0 {
        self.record(format!(
            "edit {} {:?}",
            e.target.remote_id,
            e.new_content.msgtype.body()
        ));
        Ok(())
    }
    async fn handle_reaction(
        &self,
        _: &bridgekit::BridgeContext,
        r: bridgekit::MatrixReaction,
    ) -> Result0 {
        self.record(format!("reaction {} {}", r.target.remote_id, r.key));
        Ok(())
    }
    async fn handle_redaction(
        &self,
        _: &bridgekit::BridgeContext,
        r: bridgekit::MatrixRedaction,
    ) -> Result0 {
        let target = match r.target {
            bridgekit::RedactedTarget::Message(m) => format!("message {}", m.remote_id),
            bridgekit::RedactedTarget::Reaction(m) => format!("reaction {}", m.key),
            _ => "other".into(),
        };
        self.record(format!("redaction {target} reason={:?}", r.reason));
        Ok(())
    }
    async fn handle_membership(
        &self,
        _: &bridgekit::BridgeContext,
        m: bridgekit::MatrixMembership,
    ) -> Result0 {
        self.record(format!(
            "membership {} {} remote={:?}",
            m.user_id,
            m.membership.as_str(),
            m.remote_user.map(|r| r.into_string())
        ));
        Ok(())
    }
    async fn handle_room_change(
        &self,
        _: &bridgekit::BridgeContext,
        c: bridgekit::MatrixRoomChange,
    ) -> Result0 {
        self.record(format!("room {:?}", c.change));
        Ok(())
    }
}

impl Env {
    /// Synapse with the registration of `config.yaml`, and no bridge yet: run one in-process
    /// with [`Env::run_in_process`].
    pub async fn synapse_only() -> Env {
        Self::start_inner(false, false, "", &[]).await
    }

    /// [`synapse_only`](Self::synapse_only) with a double-puppet registration as well, made
    /// as an operator makes it (`generate-registration --double-puppet`), registered with
    /// Synapse and named in the config's `double_puppet.secrets`.
    pub async fn synapse_with_double_puppet() -> Env {
        Self::start_inner(false, true, "", &[]).await
    }

    /// The bridge's config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Runs a bridge in this process with this env's config; returns its context once ready.
    pub async fn run_in_process(&self) -> InProcess {
        let config = bridgekit::Config::load(&self.config).unwrap();
        let bridge = HandOver::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bridgekit::run_until(bridge.clone(), config, async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while bridge.0.get().is_none() {
            assert!(
                !task.is_finished(),
                "in-process bridge failed: {:?}",
                task.await
            );
            assert!(Instant::now() < deadline, "in-process bridge not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        InProcess {
            ctx: bridge.0.get().unwrap().clone(),
            seen: bridge.1.clone(),
            stop: Some(stop),
            task,
        }
    }

    pub async fn start() -> Env {
        Self::start_inner(true, false, "", &[]).await
    }

    /// The bridge process with `extra` appended to its config (before the registration is
    /// generated, so it follows the config as an operator's would).
    pub async fn start_with(extra: &str) -> Env {
        Self::start_inner(true, false, extra, &[]).await
    }

    /// Synapse started with `synapse_env` (see tests/synapse/start.sh) and a config with
    /// `extra`, and no bridge: for runs that must fail.
    pub async fn synapse_only_with(extra: &str, synapse_env: &[(&str, &str)]) -> Env {
        Self::start_inner(false, false, extra, synapse_env).await
    }

    async fn start_inner(
        with_bridge_process: bool,
        double_puppet: bool,
        extra: &str,
        synapse_env: &[(&str, &str)],
    ) -> Env {
        let spec = crate::bridge_spec();
        let id = spec.id;
        let dir = tempfile::tempdir().unwrap();
        let (hs_port, as_port) = (free_port(), free_port());
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "homeserver: {{url: 'http://127.0.0.1:{hs_port}', server_name: localhost}}\n\
                 appservice: {{id: {id}, listen: '127.0.0.1:{as_port}', bot: {id}bot, registration: registration.yaml}}\n\
                 store: {{path: store}}\n{}{extra}",
                spec.extra_config
            ),
        )
        .unwrap();
        let puppet_registration = dir.path().join("doublepuppet.yaml");
        let mut generate = Command::new(spec.binary);
        generate
            .arg("--config")
            .arg(&config)
            .arg("generate-registration");
        if double_puppet {
            generate.arg("--double-puppet").arg(&puppet_registration);
        }
        let out = generate.output().unwrap();
        assert!(
            out.status.success(),
            "generate-registration: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut registrations = vec![dir.path().join("registration.yaml")];
        if double_puppet {
            // The operator adds the line generate-registration prints.
            let printed = String::from_utf8_lossy(&out.stdout);
            let line = printed
                .lines()
                .find_map(|l| l.strip_prefix("add to the bridge's config: "))
                .unwrap_or_else(|| panic!("no config line printed: {printed}"));
            let mut text = std::fs::read_to_string(&config).unwrap();
            text.push_str(line);
            text.push('\n');
            std::fs::write(&config, text).unwrap();
            registrations.push(puppet_registration);
        }
        let registration = registrations[0].clone();
        let reg: Value =
            serde_norway::from_str(&std::fs::read_to_string(&registration).unwrap()).unwrap();
        let out = Command::new("bash")
            .arg(SYNAPSE_START)
            .arg(dir.path().join("synapse"))
            .arg(hs_port.to_string())
            .args(&registrations)
            .envs(synapse_env.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Synapse did not start; see {}/synapse/homeserver.log",
            dir.path().display()
        );
        let mut env = Env {
            hs_url: format!("http://127.0.0.1:{hs_port}"),
            as_url: format!("http://127.0.0.1:{as_port}"),
            hs_token: reg["hs_token"].as_str().unwrap().to_owned(),
            bot: format!("@{id}bot:localhost"),
            config,
            binary: spec.binary,
            hs_port,
            bridge: None,
            http: reqwest::Client::new(),
            dir,
        };
        if with_bridge_process {
            env.start_bridge().await;
        }
        env
    }

    pub fn bridge_log(&self) -> PathBuf {
        self.dir.path().join("bridge.log")
    }

    /// Starts the bridge (appending to its log) and waits until it is ready.
    pub async fn start_bridge(&mut self) {
        self.start_bridge_with(&[]).await
    }

    /// Like [`start_bridge`](Self::start_bridge), with more environment (config overrides
    /// such as `BRIDGEKIT_BRIDGE_SENDS_IN_FLIGHT_PER_ROOM`).
    pub async fn start_bridge_with(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.bridge_log())
            .unwrap();
        let child = Command::new(self.binary)
            .arg("--config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("BRIDGE_LOG").unwrap_or("info,bridgekit=debug".into()),
            )
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.bridge = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/health/ready", self.as_url))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.bridge.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "bridge exited with {status}:\n{}",
                    std::fs::read_to_string(self.bridge_log()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bridge not ready after 30 s:\n{}",
                std::fs::read_to_string(self.bridge_log()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops Synapse (the homeserver outage); its database stays.
    pub fn synapse_down(&self) {
        let ok = Command::new("bash")
            .arg(SYNAPSE_STOP)
            .arg(self.dir.path().join("synapse"))
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Starts Synapse again on the same port and database.
    pub fn synapse_up(&self) {
        let out = Command::new("bash")
            .arg(SYNAPSE_START)
            .arg(self.dir.path().join("synapse"))
            .arg(self.hs_port.to_string())
            .arg(self.dir.path().join("registration.yaml"))
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "Synapse did not come back");
    }

    /// SIGTERMs the bridge and waits for it; returns its exit status and how long it took.
    pub fn terminate_bridge(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.bridge.take().expect("bridge running");
        let started = Instant::now();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let status = child.wait().unwrap();
        (status, started.elapsed())
    }

    /// SIGKILLs the bridge: no shutdown code runs.
    pub fn kill_bridge(&mut self) {
        if let Some(mut child) = self.bridge.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Registers a user with a password and returns its session.
    pub async fn user(&self, name: &str) -> User {
        let body: Value = self
            .http
            .post(format!("{}/_matrix/client/v3/register", self.hs_url))
            .json(&json!({"username": name, "password": "pw-".to_owned() + name, "auth": {"type": "m.login.dummy"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        User {
            hs: self.hs_url.clone(),
            token: body["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("register {name}: {body}"))
                .to_owned(),
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            http: self.http.clone(),
        }
    }

    /// PUTs a transaction to the bridge as the homeserver would.
    pub async fn push_transaction(&self, txn_id: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(format!(
                "{}/_matrix/app/v1/transactions/{txn_id}",
                self.as_url
            ))
            .bearer_auth(&self.hs_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_bridge();
        let _ = Command::new("bash")
            .arg(SYNAPSE_STOP)
            .arg(self.dir.path().join("synapse"))
            .status();
        if std::thread::panicking() {
            eprintln!(
                "--- bridge log ---\n{}",
                std::fs::read_to_string(self.bridge_log()).unwrap_or_default()
            );
            // Keep the directory for inspection.
            let path: &Path = self.dir.path();
            eprintln!("kept {}", path.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().unwrap(),
            ));
        }
    }
}

/// A logged-in Matrix user.
#[derive(Clone)]
pub struct User {
    hs: String,
    pub token: String,
    pub user_id: String,
    http: reqwest::Client,
}

impl User {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.hs))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A second session of this user (another device): its own access token.
    pub async fn another_session(&self) -> User {
        let name = self
            .user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap();
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/login",
                Some(json!({
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": name},
                    "password": format!("pw-{name}"),
                })),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        User {
            token: body["access_token"].as_str().unwrap().to_owned(),
            ..self.clone()
        }
    }

    /// Creates a room, invites the bot and waits until it has joined.
    pub async fn room_with_bot(&self, bot: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(json!({"invite": [bot]})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let room = body["room_id"].as_str().unwrap().to_owned();
        wait_for(&format!("{bot} to join"), || async {
            let (_, members) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/_matrix/client/v3/rooms/{}/joined_members", q(&room)),
                    None,
                )
                .await;
            members["joined"].get(bot).is_some().then_some(())
        })
        .await;
        room
    }

    pub async fn send(&self, room: &str, content: Value) -> String {
        let txn = format!(
            "t{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            q(room)
        );
        let (status, body) = self.call(reqwest::Method::PUT, &path, Some(content)).await;
        assert_eq!(status, 200, "send: {body}");
        body["event_id"].as_str().unwrap().to_owned()
    }

    pub async fn send_text(&self, room: &str, text: &str) -> String {
        self.send(room, json!({"msgtype": "m.text", "body": text}))
            .await
    }

    /// The room's recent timeline, oldest first.
    pub async fn timeline(&self, room: &str) -> Vec<Value> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=500",
            q(room)
        );
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        let mut events = body["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }

    /// Messages in the room not sent by `except`, as (sender, body, event) triples.
    pub async fn messages_from_others(
        &self,
        room: &str,
        except: &[&str],
    ) -> Vec<(String, String, Value)> {
        self.timeline(room)
            .await
            .into_iter()
            .filter(|e| {
                e["type"] == "m.room.message"
                    && !except.contains(&e["sender"].as_str().unwrap_or(""))
            })
            .map(|e| {
                (
                    e["sender"].as_str().unwrap().to_owned(),
                    e["content"]["body"].as_str().unwrap_or("").to_owned(),
                    e,
                )
            })
            .collect()
    }
}

/// Polls `check` every 100 ms for up to 30 s.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
