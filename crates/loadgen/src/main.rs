//! `loadgen`: drives a bridge like Synapse does and measures it.
//!
//! It starts a fake homeserver, spawns the target (the echo bridge, the ingest-only bridge,
//! or the minimal baseline appservice), pushes transactions of `--batch` events one at a time,
//! waits for every echo, and prints one JSON line per run: throughput, echo latency and ack
//! percentiles, CPU per 1,000 events and peak RSS of the target, and every lost, duplicated
//! or swallowed event.
//!
//! `loadgen` (no arguments) runs echo and ingest against both bridgekit and the baseline.

use loadgen::fake_hs;
use loadgen::proc_stats;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser, Clone)]
#[command(about = "Load generator: a fake homeserver that pushes transactions to a bridge")]
struct Args {
    /// Targets: bridgekit (echo-bridge / ingest-bridge) and/or baseline.
    #[arg(long, value_delimiter = ',', default_value = "baseline,bridgekit")]
    targets: Vec<String>,
    /// Modes: echo (each event answered by one send) and/or ingest (acknowledged only).
    #[arg(long, value_delimiter = ',', default_value = "echo,ingest")]
    modes: Vec<String>,
    /// Events per run.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per transaction (Synapse sends up to 100).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Rooms the events are spread over.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Remote senders (one ghost each).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Offered events per second; 0 pushes as fast as acknowledged.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Print a progress line (RSS, store size, latency of the last window) this often, in
    /// seconds; 0 for none. For soak runs.
    #[arg(long, default_value_t = 0)]
    report_every: u64,
    /// Start a homeserver outage (every send answers 503) this many seconds into the run.
    #[arg(long)]
    outage_at: Option<u64>,
    /// How long the outage lasts, in seconds.
    #[arg(long, default_value_t = 600)]
    outage_secs: u64,
    /// Message mappings written into bridgekit's store before it starts (cold start and
    /// memory with a history).
    #[arg(long, default_value_t = 0)]
    prefill_messages: usize,
    /// Ghosts written into the store before the start.
    #[arg(long, default_value_t = 0)]
    prefill_ghosts: usize,
    /// Portals written into the store before the start.
    #[arg(long, default_value_t = 0)]
    prefill_portals: usize,
    /// Directory with the target binaries (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

struct Target {
    child: Child,
    as_url: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes config and registration and spawns the target; returns it with the hs_token.
fn spawn(target: &str, mode: &str, dir: &Path, bins: &Path, hs_url: &str) -> (Target, String) {
    let as_port = free_port();
    let as_url = format!("http://127.0.0.1:{as_port}");
    let config_path = dir.join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "homeserver: {{url: '{hs_url}', server_name: localhost}}\n\
             appservice: {{id: echo, listen: '127.0.0.1:{as_port}', bot: echobot, registration: registration.yaml}}\n\
             store: {{path: store}}\nlogging: {{level: warn}}\n"
        ),
    )
    .unwrap();
    let config = bridgekit::Config::load(&config_path).unwrap();
    let registration = bridgekit::Registration::generate(&config, vec![]);
    registration
        .write(&config.appservice.registration, true)
        .unwrap();
    let mut cmd = match (target, mode) {
        ("baseline", _) => {
            let mut c = Command::new(bins.join("baseline"));
            c.args([
                "--listen",
                &format!("127.0.0.1:{as_port}"),
                "--hs",
                hs_url,
                "--mode",
                mode,
            ])
            .args([
                "--as-token",
                &registration.as_token,
                "--hs-token",
                &registration.hs_token,
            ]);
            c
        }
        ("bridgekit", "echo") => Command::new(bins.join("echo-bridge")),
        ("bridgekit", _) => Command::new(bins.join("ingest-bridge")),
        (other, _) => panic!("unknown target {other}"),
    };
    if target == "bridgekit" {
        cmd.arg("--config").arg(&config_path);
        // On PostgreSQL (BRIDGEKIT_STORE_POSTGRES_URL), each run gets a schema of its own:
        // a reused one would recognise every transaction as a retry.
        if std::env::var_os("BRIDGEKIT_STORE_POSTGRES_URL").is_some()
            && std::env::var_os("BRIDGEKIT_STORE_POSTGRES_SCHEMA").is_none()
        {
            let unique = dir.file_name().unwrap().to_string_lossy().to_lowercase();
            let schema: String = unique
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            cmd.env(
                "BRIDGEKIT_STORE_POSTGRES_SCHEMA",
                format!("loadgen{schema}"),
            );
        }
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| {
        panic!("cannot start {target} from {}: {e} (build it: cargo build --release -p echo-bridge -p loadgen)", bins.display())
    });
    (Target { child, as_url }, registration.hs_token)
}

/// Progress lines for long runs, and the simulated outage.
fn spawn_reporter_and_outage(
    args: &Args,
    state: actix_web::web::Data<fake_hs::FakeState>,
    pid: u32,
    store: PathBuf,
) -> tokio::task::JoinHandle<()> {
    let (every, outage_at, outage_secs) = (args.report_every, args.outage_at, args.outage_secs);
    tokio::spawn(async move {
        let started = Instant::now();
        let mut window_start_ns = state.now_ns();
        let mut outage_done = false;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let secs = started.elapsed().as_secs();
            if let Some(at) = outage_at
                && !outage_done
            {
                let down = secs >= at && secs < at + outage_secs;
                if state.outage.swap(down, Relaxed) != down {
                    eprintln!("{{\"t\": {secs}, \"outage\": {down}}}");
                    outage_done = !down;
                }
            }
            if every == 0 || !secs.is_multiple_of(every) {
                continue;
            }
            let now_ns = state.now_ns();
            let mut window: Vec<u64> = state
                .pushed_at
                .iter()
                .zip(&state.latency)
                .zip(&state.echoes)
                .filter(|((p, _), e)| {
                    let p = p.load(Relaxed);
                    p >= window_start_ns && p < now_ns && e.load(Relaxed) > 0
                })
                .map(|((_, l), _)| l.load(Relaxed))
                .collect();
            window.sort_unstable();
            window_start_ns = now_ns;
            println!(
                "{}",
                json!({
                    "t": secs, "echoed": state.echoed.load(Relaxed),
                    "rss_mib": (proc_stats::rss_kib(pid) as f64 / 1024.0 * 10.0).round() / 10.0,
                    "store_mib": (dir_size(&store) as f64 / 1048576.0 * 10.0).round() / 10.0,
                    "window_echoes": window.len(),
                    "latency_ms": {"p50": percentile(&window, 0.5), "p99": percentile(&window, 0.99)},
                    "outage": state.outage.load(Relaxed),
                })
            );
        }
    })
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

async fn run(args: &Args, target: &str, mode: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let bins = args.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_owned()
    });
    let hs_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hs_url = format!("http://{}", hs_listener.local_addr().unwrap());
    let prefill = loadgen::prefill::Prefill {
        messages: args.prefill_messages,
        ghosts: args.prefill_ghosts,
        portals: args.prefill_portals,
    };
    let prefill_secs = if target == "bridgekit" && !prefill.is_empty() {
        prefill.write(&dir.path().join("store")).await
    } else {
        0.0
    };
    let (mut t, hs_token) = spawn(target, mode, dir.path(), &bins, &hs_url);
    let state = actix_web::web::Data::new(fake_hs::FakeState::new(
        args.events,
        t.as_url.clone(),
        hs_token.clone(),
    ));
    let server = fake_hs::serve(state.clone(), hs_listener).unwrap();
    let server_handle = server.handle();
    tokio::spawn(server);
    let http = reqwest::Client::new();

    let start_wait = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{}/health/ready", t.as_url)).send().await
            && r.status() == 200
        {
            break;
        }
        if let Ok(Some(status)) = t.child.try_wait() {
            panic!("{target} exited during startup: {status}");
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(30),
            "{target} not ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready_ms = start_wait.elapsed().as_secs_f64() * 1000.0;
    let pid = t.child.id();
    let ready_rss_kib = proc_stats::rss_kib(pid);
    let background = spawn_reporter_and_outage(args, state.clone(), pid, dir.path().join("store"));

    let cpu_before = proc_stats::cpu_ms(pid);
    let started = Instant::now();
    let start_ns = state.now_ns();
    let mut acks = Vec::with_capacity(args.events / args.batch + 1);
    let mut failed_txns = 0u64;
    let mut n = 0usize;
    let mut txn = 0u64;
    while n < args.events {
        if args.rate > 0 {
            let due = Duration::from_secs_f64(n as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let end = (n + args.batch).min(args.events);
        let mut body = String::with_capacity(64 + (end - n) * 220);
        body.push_str(r#"{"events":["#);
        for i in n..end {
            if i > n {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"event_id":"$e{i}","room_id":"!r{}:localhost","sender":"@u{}:localhost","type":"m.room.message","origin_server_ts":1,"content":{{"msgtype":"m.text","body":"e{i}"}}}}"#,
                i % args.rooms,
                i % args.users
            ));
        }
        body.push_str("]}");
        let now = state.now_ns();
        for i in n..end {
            state.pushed_at[i].store(now, Relaxed);
        }
        let sent = Instant::now();
        // One transaction in flight, retried on failure like Synapse (without its backoff).
        loop {
            let r = http
                .put(format!("{}/_matrix/app/v1/transactions/{txn}", t.as_url))
                .bearer_auth(&hs_token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => break,
                _ => {
                    failed_txns += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        acks.push(sent.elapsed().as_nanos() as u64);
        txn += 1;
        n = end;
    }
    let pushed_secs = started.elapsed().as_secs_f64();
    if mode == "echo" {
        let deadline = Instant::now() + Duration::from_secs(60);
        while (state.echoed.load(Relaxed) as usize) < args.events && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // let late duplicates show
    }
    let secs = if mode == "echo" {
        (state.last_echo_ns.load(Relaxed).saturating_sub(start_ns) as f64 / 1e9).max(pushed_secs)
    } else {
        pushed_secs
    };
    let cpu_ms = proc_stats::cpu_ms(pid).saturating_sub(cpu_before);
    let rss_kib = proc_stats::peak_rss_kib(pid);
    acks.sort_unstable();
    let mut latencies: Vec<u64> = if mode == "echo" {
        state
            .latency
            .iter()
            .zip(&state.echoes)
            .filter(|(_, e)| e.load(Relaxed) > 0)
            .map(|(l, _)| l.load(Relaxed))
            .collect()
    } else {
        Vec::new()
    };
    latencies.sort_unstable();
    let lost = if mode == "echo" {
        state.echoes.iter().filter(|e| e.load(Relaxed) == 0).count()
    } else {
        0
    };
    background.abort();
    server_handle.stop(false).await;
    drop(t);
    json!({
        "target": target, "mode": mode, "events": args.events, "batch": args.batch,
        "rooms": args.rooms, "users": args.users, "offered_rate": args.rate,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "events_per_sec": (args.events as f64 / secs).round(),
        "cpu_ms_per_1k_events": (cpu_ms as f64 * 1000.0 / args.events as f64 * 10.0).round() / 10.0,
        "peak_rss_mib": (rss_kib as f64 / 1024.0 * 10.0).round() / 10.0,
        "ready_ms": (ready_ms * 10.0).round() / 10.0,
        "ready_rss_mib": (ready_rss_kib as f64 / 1024.0 * 10.0).round() / 10.0,
        "prefill": {"messages": prefill.messages, "ghosts": prefill.ghosts, "portals": prefill.portals, "seconds": (prefill_secs * 10.0).round() / 10.0},
        "ack_ms": {"p50": percentile(&acks, 0.5), "p99": percentile(&acks, 0.99), "max": percentile(&acks, 1.0)},
        "echo_latency_ms": {"p50": percentile(&latencies, 0.5), "p90": percentile(&latencies, 0.9), "p99": percentile(&latencies, 0.99), "max": percentile(&latencies, 1.0)},
        "lost": lost, "duplicated": state.duplicated.load(Relaxed), "swallowed": state.swallowed.load(Relaxed),
        "failed_transactions": failed_txns,
    })
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    for mode in &args.modes {
        for target in &args.targets {
            println!("{}", run(&args, target, mode).await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank_in_milliseconds() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile(&ns, 0.5), 51.0);
        assert_eq!(percentile(&ns, 0.99), 99.0);
        assert_eq!(percentile(&ns, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn proc_stats_see_this_process_working() {
        let pid = std::process::id();
        let before = proc_stats::cpu_ms(pid);
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(
            proc_stats::cpu_ms(pid) >= before + 100,
            "300 ms of busy loop shows as CPU time"
        );
        assert!(proc_stats::peak_rss_kib(pid) > 1024);
    }
}
