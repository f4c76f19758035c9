//! Hot standby on PostgreSQL: two copies of the echo bridge on one schema behind one address
//! (a small TCP forwarder routing to whichever copy's `/health/active` answers 200, as a load
//! balancer would). The active copy is SIGKILLed under load again and again; each time the
//! waiting copy takes over within five seconds, the killed one comes back as the standby, and
//! afterwards every event was echoed exactly once. A copy whose lock session the database ends
//! stops at once, and a graceful stop hands over too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{BATCH, Bridge, EVENTS, free_port, postgres, push, transaction_body};

/// Takeovers in one run.
const KILLS: usize = 5;
/// What the issue asks of a takeover.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(5);
const NONE: usize = usize::MAX;

/// Accepts on `listener` and pipes each connection to the backend last seen active.
fn forward(listener: tokio::net::TcpListener, backends: Vec<u16>) -> Arc<AtomicUsize> {
    let active = Arc::new(AtomicUsize::new(NONE));
    let poller = active.clone();
    let ports = backends.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        loop {
            let mut found = NONE;
            for (i, port) in ports.iter().enumerate() {
                let url = format!("http://127.0.0.1:{port}/health/active");
                if http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
                    found = i;
                    break;
                }
            }
            poller.store(found, Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let routing = active.clone();
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let chosen = routing.load(Relaxed);
            let port = backends[if chosen == NONE { 0 } else { chosen }];
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    active
}

/// Ends the database session holding `schema`'s lock, as a database restart would; returns
/// how many sessions were ended.
async fn terminate_lock_session(url: &str, schema: &str) -> usize {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // A bigint advisory key shows as classid (high half) and objid (low half).
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objid::bigint = (hashtext($1)::bigint & 4294967295)",
            &[&format!("bridgekit:{schema}")],
        )
        .await
        .unwrap();
    rows.len()
}

async fn status(http: &reqwest::Client, port: u16, path: &str) -> Option<u16> {
    let r = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

/// Waits until the copy on `port` reports ready; returns how long it took.
async fn until_ready(http: &reqwest::Client, port: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    while status(http, port, "/health/ready").await != Some(200) {
        assert!(
            start.elapsed() < limit * 4,
            "the copy on {port} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Waits until the copy on `port` answers as a standby.
async fn until_standby(http: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(http, port, "/health/live").await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the standby on {port} never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status(http, port, "/health/ready").await, Some(503));
    assert_eq!(status(http, port, "/health/active").await, Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_five_seconds_and_loses_nothing() {
    let _turn = super::SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let url = postgres::cluster().url.clone();
    let schema = postgres::fresh_schema("standby");

    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_url = format!("http://{}", front.local_addr().unwrap());
    let hs_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hs_url = format!("http://{}", hs_listener.local_addr().unwrap());
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "homeserver: {{url: '{hs_url}', server_name: localhost}}\n\
             appservice: {{id: echo, listen: '{}', url: '{front_url}', bot: echobot, registration: registration.yaml}}\n\
             store: {{postgres_url: '{url}', postgres_schema: {schema}, standby: true}}\n\
             logging: {{level: warn}}\n",
            front.local_addr().unwrap()
        ),
    )
    .unwrap();
    let (config, hs_token, state, server_handle) =
        super::start_homeserver(&config_path, &front_url, hs_listener);

    let ports = [free_port(), free_port()];
    let active = forward(front, ports.to_vec());
    let mut copies = ports.map(|port| Bridge {
        config: config_path.clone(),
        child: None,
        env: vec![(
            "BRIDGEKIT_APPSERVICE_LISTEN".into(),
            format!("127.0.0.1:{port}"),
        )],
    });
    let http = reqwest::Client::new();
    copies[0].start();
    until_ready(&http, ports[0], Duration::from_secs(30)).await;
    copies[1].start();
    until_standby(&http, ports[1]).await;

    // Push under load; after every stretch, SIGKILL the active copy and time the takeover.
    let stretch = EVENTS.div_ceil(BATCH).div_ceil(KILLS + 1);
    let mut current = 0;
    let mut takeovers = Vec::new();
    for (n, first) in (0..EVENTS).step_by(BATCH).enumerate() {
        let txn = first / BATCH;
        let now = state.now_ns();
        for i in first..(first + BATCH).min(EVENTS) {
            state.pushed_at[i].store(now, Relaxed);
        }
        push(&http, &front_url, &hs_token, txn, &transaction_body(first)).await;
        if n % stretch == stretch - 1 && takeovers.len() < KILLS {
            copies[current].kill();
            let killed_at = Instant::now();
            let next = 1 - current;
            until_ready(&http, ports[next], TAKEOVER_LIMIT).await;
            takeovers.push(killed_at.elapsed());
            copies[current].start();
            until_standby(&http, ports[current]).await;
            current = next;
        }
    }
    assert_eq!(takeovers.len(), KILLS);
    assert_eq!(
        active.load(Relaxed),
        current,
        "the forwarder follows the active copy"
    );
    let slowest = takeovers.iter().max().unwrap();
    eprintln!("standby test: {KILLS} takeovers, {takeovers:?} from SIGKILL to ready");
    assert!(
        *slowest < TAKEOVER_LIMIT,
        "a takeover took {slowest:?} (limit {TAKEOVER_LIMIT:?})"
    );

    // Every event echoed exactly once across all the copies.
    super::expect_echoed_once(&state, EVENTS).await;

    // A copy whose lock connection dies (the database restarted it, the network failed)
    // stops at once rather than run next to the standby that takes over.
    let terminated = terminate_lock_session(&url, &schema).await;
    assert_eq!(terminated, 1, "one session holds the schema's lock");
    let lost_at = Instant::now();
    let status = loop {
        let child = copies[current].child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            lost_at.elapsed() < TAKEOVER_LIMIT,
            "the copy that lost its lock kept running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!status.success(), "losing the lock is a failure: {status}");
    copies[current].child = None;
    current = 1 - current;
    until_ready(&http, ports[current], TAKEOVER_LIMIT).await;
    copies[1 - current].start();
    until_standby(&http, ports[1 - current]).await;

    // A copy stopped gracefully hands over too: the standby becomes ready.
    copies[current].terminate();
    until_ready(&http, ports[1 - current], TAKEOVER_LIMIT).await;
    copies[1 - current].terminate();
    server_handle.stop(false).await;
    let store = bridgekit::store::open(&config.store.location)
        .await
        .unwrap();
    super::every_mapping_is_there(&*store, EVENTS).await;
}
