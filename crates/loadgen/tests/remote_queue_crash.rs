//! The remote queue across SIGKILLs: a remote network (a TCP line feed) hands events to
//! `feed-bridge`, which acknowledges each once `ctx.remote_event` returns. The network
//! redelivers only what was not acknowledged. The bridge is SIGKILLed again and again while
//! the feed runs; in the end every event reached its room exactly once.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use actix_web::web::Data;
use loadgen::fake_hs::{FakeState, serve};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EVENTS: usize = 3000;
const ROOMS: usize = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The remote network: on each connection it sends every event not yet acknowledged, in
/// order, and takes acknowledgements; an acknowledged event is never sent again.
async fn feed(listener: tokio::net::TcpListener, acked: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let acked = acked.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let from = acked.load(SeqCst);
            tokio::spawn(async move {
                for n in from..EVENTS {
                    if write.write_all(format!("{n}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let n: usize = line.trim_start_matches("ack ").parse().unwrap();
                // Acknowledgements come in order: everything up to n is stored.
                acked.fetch_max(n + 1, SeqCst);
            }
        });
    }
}

struct Bridge {
    config: std::path::PathBuf,
    child: Option<Child>,
}

impl Bridge {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_feed-bridge"))
            .arg("--config")
            .arg(&self.config)
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
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_acknowledged_to_the_network_survive_repeated_sigkills() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let as_port = free_port();
    let hs_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hs_url = format!("http://{}", hs_listener.local_addr().unwrap());
    let feed_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let feed_addr = feed_listener.local_addr().unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "homeserver: {{url: '{hs_url}', server_name: localhost}}\n\
             appservice: {{id: feed, listen: '127.0.0.1:{as_port}', bot: feedbot, registration: registration.yaml}}\n\
             store: {{path: store}}\nlogging: {{level: warn}}\n\
             network: {{feed: '{feed_addr}', rooms: {ROOMS}}}\n"
        ),
    )
    .unwrap();
    let config = bridgekit::Config::load(&config_path).unwrap();
    let registration = bridgekit::Registration::generate(&config, vec![]);
    registration
        .write(&config.appservice.registration, true)
        .unwrap();
    let url = format!("http://127.0.0.1:{as_port}");
    let state = Data::new(FakeState::new(
        EVENTS,
        url.clone(),
        registration.hs_token.clone(),
    ));
    let server = serve(state.clone(), hs_listener).unwrap();
    tokio::spawn(server);
    let acked = Arc::new(AtomicUsize::new(0));
    tokio::spawn(feed(feed_listener, acked.clone()));

    let mut bridge = Bridge {
        config: config_path,
        child: None,
    };
    bridge.start();
    wait_ready(&url).await;
    // A SIGKILL each time another tenth of the feed is acknowledged: the moment events the
    // network will never send again may still wait in the queue.
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    for tenth in 1..10 {
        while acked.load(SeqCst) < EVENTS * tenth / 10 {
            assert!(
                Instant::now() < deadline,
                "only {} of {EVENTS} events acknowledged",
                acked.load(SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        bridge.kill();
        kills += 1;
        bridge.start();
        wait_ready(&url).await;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    while (state.echoed.load(Relaxed) as usize) < EVENTS {
        assert!(
            Instant::now() < deadline,
            "only {} of {EVENTS} events reached Matrix after {kills} SIGKILLs",
            state.echoed.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let late repeats show
    let twice = state.echoes.iter().filter(|e| e.load(Relaxed) > 1).count();
    assert_eq!(twice, 0, "events sent twice");
    assert_eq!(state.duplicated.load(Relaxed), 0);
    assert_eq!(state.swallowed.load(Relaxed), 0);
    eprintln!("remote queue crash test: {kills} SIGKILLs, {EVENTS} events in Matrix once each");
}
