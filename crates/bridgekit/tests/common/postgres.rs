//! A throwaway PostgreSQL cluster on loopback for the tests and benchmarks: one per process,
//! started on first use from the machine's Debian packages (installed by
//! `tests/postgres/ensure.sh` when missing), stopped by a watchdog when the process exits.
//! `BRIDGEKIT_TEST_POSTGRES_URL` points the tests at an existing server instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running cluster: how to reach it.
pub struct Cluster {
    /// Connection string of the `postgres` database, as the superuser `bridgekit`.
    pub url: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The process's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match std::env::var("BRIDGEKIT_TEST_POSTGRES_URL") {
        Ok(url) => Cluster { url },
        Err(_) => start(true),
    })
}

/// A schema name no other test in this run uses.
pub fn fresh_schema(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bindir() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/postgres/ensure.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("can run tests/postgres/ensure.sh");
    assert!(
        out.status.success(),
        "tests/postgres/ensure.sh failed: PostgreSQL is needed for the store tests"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// initdb and postgres refuse to run as root: run them as the `postgres` system user then.
fn as_server_user(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } == 0 {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// Starts a cluster in a new temporary directory. `durable: false` turns fsync off, which is
/// fine for tests that kill the bridge, not the database.
// The server and its watchdog outlive this process on purpose; the watchdog reaps both.
#[allow(clippy::zombie_processes)]
pub fn start(durable: bool) -> Cluster {
    let bin = bindir();
    let dir = std::env::temp_dir().join(format!(
        "bridgekit-pg-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    if unsafe { geteuid() } == 0 {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown of the cluster directory failed");
    }
    let data = dir.join("data");
    let status = as_server_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "bridgekit", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .status()
        .expect("can run initdb");
    assert!(status.success(), "initdb failed");
    let port = free_port();
    let fsync = if durable { "on" } else { "off" };
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let server = as_server_user(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(&dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c"])
        .arg(format!("fsync={fsync}"))
        .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("can start postgres");
    // The cluster outlives nothing: when this process ends, the watchdog stops the server
    // (SIGINT: fast shutdown) and removes its directory.
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             kill -INT $(head -1 '{data}/postmaster.pid') {pg} 2>/dev/null; sleep 3; rm -rf '{dir}'",
            me = std::process::id(),
            pg = server.id(),
            data = data.display(),
            dir = dir.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("can start the cluster's watchdog");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "postgres did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Cluster {
        url: format!("host=127.0.0.1 port={port} user=bridgekit dbname=postgres"),
    }
}
