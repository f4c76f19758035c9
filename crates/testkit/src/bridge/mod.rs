//! Runs a bridge in-process against a [`TestHomeserver`]: a config and a registration in a
//! temporary directory, the appservice registered with the fake, the bridge's real listener
//! and its real (sled) store, stopped and restarted on the same store.

mod capture;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bridgekit::ruma::OwnedUserId;
use bridgekit::{Bridge, BridgeContext, Config, Registration, RemoteUserId, RunError};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::TestHomeserver;
use capture::{Captured, ContextSlot};

/// How to set up a [`TestBridge`]: config keys on top of the testkit's defaults.
#[derive(Debug)]
#[must_use = "a builder does nothing until `start`"]
pub struct TestBridgeBuilder {
    hs: Arc<TestHomeserver>,
    config: Value,
}

impl TestBridgeBuilder {
    /// Sets one config key by its dotted name (`bridge.command_prefix`,
    /// `homeserver.startup_timeout_secs`, …), as the config file would.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        let mut node = &mut self.config;
        for part in key.split('.') {
            if !node.is_object() {
                *node = json!({});
            }
            node = node
                .as_object_mut()
                .expect("made an object above")
                .entry(part)
                .or_insert(Value::Null);
        }
        *node = value.into();
        self
    }

    /// Double puppeting with the homeserver's secret: a second appservice whose token may act
    /// as any user is registered with the homeserver, and `double_puppet.secrets` names it
    /// (see [`TestHomeserver::double_puppet_secret`]).
    pub fn double_puppeting(self) -> Self {
        let secret = self.hs.double_puppet_secret();
        let server = self.hs.server_name();
        self.set("double_puppet.secrets", json!({ server: secret }))
    }

    /// Sets the bridge's own `network` section.
    pub fn network(self, section: Value) -> Self {
        self.set("network", section)
    }

    /// Writes the config and registration, registers the appservice with the homeserver and
    /// runs `bridge` until it is ready. Panics with the reason when it does not start.
    pub async fn start<B: Bridge>(self, bridge: B) -> TestBridge {
        match self.try_start(bridge).await {
            Ok(running) => running,
            Err(e) => panic!("the bridge did not start: {e}"),
        }
    }

    /// [`start`](Self::start), returning why the bridge stopped instead of panicking (to test
    /// a bridge's startup checks).
    pub async fn try_start<B: Bridge>(self, bridge: B) -> Result<TestBridge, RunError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("config.yaml");
        // JSON is YAML: the config file the bridge reads is the builder's tree.
        let text = self.config.to_string();
        std::fs::write(&path, &text).expect("the config is writable");
        let config = Config::parse(&text, &path, &|_| None)
            .unwrap_or_else(|e| panic!("the test's config is invalid: {e}"));
        let registration = Registration::generate(&config, bridge.protocols());
        registration
            .write(&config.appservice.registration, false)
            .expect("the registration is writable");
        self.hs.register_appservice(
            &config.appservice.url,
            &registration.as_token,
            &registration.hs_token,
            &config.appservice.bot,
            &config.appservice.ghost_prefix,
        );
        let mut running = TestBridge {
            hs: self.hs,
            dir,
            config,
            registration,
            context: ContextSlot::default(),
            run: None,
        };
        running.run(bridge).await?;
        Ok(running)
    }
}

/// A bridge running in-process against a [`TestHomeserver`]. Dropping it stops the bridge.
pub struct TestBridge {
    hs: Arc<TestHomeserver>,
    dir: tempfile::TempDir,
    config: Config,
    registration: Registration,
    context: ContextSlot,
    run: Option<Run>,
}

/// One run of the bridge.
struct Run {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RunError>>,
}

impl std::fmt::Debug for TestBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBridge")
            .field("url", &self.url())
            .field("dir", &self.dir.path())
            .field("running", &self.run.is_some())
            .finish_non_exhaustive()
    }
}

impl TestBridge {
    /// A builder for a bridge against `hs`, with the testkit's config: appservice `testkit`
    /// with bot `bot` and ghosts `@_testkit_…`, listening on a free port, a sled store in the
    /// temporary directory, a 5-second startup timeout.
    pub fn builder(hs: &Arc<TestHomeserver>) -> TestBridgeBuilder {
        TestBridgeBuilder {
            hs: hs.clone(),
            config: json!({
                "homeserver": {
                    "url": hs.url(),
                    "server_name": hs.server_name(),
                    "startup_timeout_secs": 5,
                },
                "appservice": {
                    "id": "testkit",
                    "listen": format!("127.0.0.1:{}", crate::free_port()),
                    "bot": "bot",
                    "registration": "registration.yaml",
                },
                "store": {"path": "store"},
            }),
        }
    }

    /// Runs `bridge` against `hs` with the testkit's config ([`builder`](Self::builder)).
    pub async fn start<B: Bridge>(hs: &Arc<TestHomeserver>, bridge: B) -> TestBridge {
        Self::builder(hs).start(bridge).await
    }

    /// The running bridge's context: what its handlers are given. Panics when it is stopped.
    pub fn ctx(&self) -> BridgeContext {
        self.context
            .lock()
            .unwrap()
            .clone()
            .expect("the bridge is running")
    }

    /// The homeserver it runs against.
    pub fn homeserver(&self) -> &Arc<TestHomeserver> {
        &self.hs
    }

    /// The config it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its registration (tokens and namespaces).
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The directory holding its config, registration and store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The appservice's base URL (where the homeserver pushes, and `/metrics`, `/health`).
    pub fn url(&self) -> String {
        format!("http://{}", self.config.appservice.listen)
    }

    /// The bot's user ID.
    pub fn bot_user_id(&self) -> OwnedUserId {
        let server = &self.config.homeserver.server_name;
        OwnedUserId::try_from(format!("@{}:{server}", self.config.appservice.bot))
            .expect("the config's bot localpart is valid")
    }

    /// The Matrix user ID of the ghost standing for `remote`.
    pub fn ghost_user_id(&self, remote: &RemoteUserId) -> OwnedUserId {
        self.ctx().ghost_user_id(remote)
    }

    /// Stops the bridge (as a shutdown signal would) and waits for it to finish; its store
    /// stays for [`restart`](Self::restart). Returns how the run ended.
    pub async fn stop(&mut self) -> Result<(), RunError> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let _ = run.stop.send(());
        let ended = run.task.await.expect("the bridge's task did not panic");
        *self.context.lock().unwrap() = None;
        ended
    }

    /// Runs `bridge` again on the same config and store (after [`stop`](Self::stop), or
    /// stopping the current run first), until it is ready. Contexts the test or the bridge
    /// kept from the last run (`BridgeContext`, `LoginContext`) hold its store: let them go
    /// first, or the store is refused as in use.
    pub async fn restart<B: Bridge>(&mut self, bridge: B) {
        if let Err(e) = self.stop().await {
            panic!("the bridge's previous run failed: {e}");
        }
        if let Err(e) = self.run(bridge).await {
            panic!("the bridge did not start again: {e}");
        }
    }

    /// Pushes one raw transaction to the bridge, as the homeserver would (bypassing the
    /// fake's own pusher); returns the HTTP status. For tests of the edge itself.
    pub async fn push(&self, txn_id: &str, body: &Value) -> u16 {
        reqwest::Client::new()
            .put(format!(
                "{}/_matrix/app/v1/transactions/{txn_id}",
                self.url()
            ))
            .bearer_auth(&self.registration.hs_token)
            .json(body)
            .send()
            .await
            .expect("the bridge's listener answers")
            .status()
            .as_u16()
    }

    /// Starts a run of `bridge` and waits until `/health/ready` answers 200 or the run ends.
    async fn run<B: Bridge>(&mut self, bridge: B) -> Result<(), RunError> {
        let (stop, stopped) = oneshot::channel::<()>();
        let bridge = Captured {
            bridge,
            slot: self.context.clone(),
        };
        let task = tokio::spawn(bridgekit::run_until(bridge, self.config.clone(), async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let ready = format!("{}/health/ready", self.url());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if task.is_finished() {
                let ended = task.await.expect("the bridge's task did not panic");
                return Err(match ended {
                    Err(e) => e,
                    Ok(()) => panic!("the bridge stopped before it was ready, with no error"),
                });
            }
            if let Ok(r) = http.get(&ready).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bridge was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.run = Some(Run { stop, task });
        Ok(())
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            let _ = run.stop.send(());
        }
    }
}
