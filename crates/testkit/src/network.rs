//! Stand-ins for the remote network a bridge talks to.
//!
//! [`ScriptedNetwork`] is for a bridge whose network client is a trait or a value the test
//! can swap: the fake client hands what it sends to [`ScriptedNetwork::take`], which records
//! it (or refuses while the network is down), and the test reads what arrived.
//! [`LineServer`] is a real TCP server speaking a line protocol (IRC, XMPP's cousins, test
//! protocols): the bridge connects to it as to the real thing, the test reads the lines the
//! bridge wrote and writes lines as the network.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

/// The answer of a network that is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkDown;

impl std::fmt::Display for NetworkDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the scripted network is down")
    }
}

impl std::error::Error for NetworkDown {}

/// A remote network in memory that records what a bridge sends it. Cloning shares it.
#[derive(Debug)]
pub struct ScriptedNetwork<T> {
    shared: Arc<Shared<T>>,
}

#[derive(Debug)]
struct Shared<T> {
    received: Mutex<Vec<T>>,
    down: Mutex<bool>,
    arrived: Notify,
    /// Account name → secret, for bridges with logins.
    accounts: Mutex<std::collections::HashMap<String, String>>,
}

/// Why the scripted network refused a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginRefused {
    /// No such account.
    NoAccount,
    /// The secret is wrong.
    WrongSecret,
}

impl std::fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoginRefused::NoAccount => "no such account",
            LoginRefused::WrongSecret => "wrong password",
        })
    }
}

impl std::error::Error for LoginRefused {}

impl<T> Clone for ScriptedNetwork<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Default for ScriptedNetwork<T> {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                received: Mutex::default(),
                down: Mutex::new(false),
                arrived: Notify::new(),
                accounts: Mutex::default(),
            }),
        }
    }
}

impl<T: Clone> ScriptedNetwork<T> {
    /// A network that is up and has received nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the bridge's fake client calls to send `item`: recorded and numbered from 1 (use
    /// the number as the remote ID), or refused while the network is down.
    pub fn take(&self, item: T) -> Result<usize, NetworkDown> {
        if *self.shared.down.lock().unwrap() {
            return Err(NetworkDown);
        }
        let n = {
            let mut received = self.shared.received.lock().unwrap();
            received.push(item);
            received.len()
        };
        self.shared.arrived.notify_waiters();
        Ok(n)
    }

    /// Takes the network down (every [`take`](Self::take) refused) or brings it back.
    pub fn set_down(&self, down: bool) {
        *self.shared.down.lock().unwrap() = down;
    }

    /// Whether it is down.
    pub fn is_down(&self) -> bool {
        *self.shared.down.lock().unwrap()
    }

    /// Opens an account `name` with `secret` (or changes its secret: sessions made with the
    /// old one stop passing [`check_login`](Self::check_login), as after a password change).
    pub fn set_account(&self, name: &str, secret: &str) {
        self.shared
            .accounts
            .lock()
            .unwrap()
            .insert(name.to_owned(), secret.to_owned());
    }

    /// What the bridge's fake client calls to log in (or to reconnect a session).
    pub fn check_login(&self, name: &str, secret: &str) -> Result<(), LoginRefused> {
        match self.shared.accounts.lock().unwrap().get(name) {
            None => Err(LoginRefused::NoAccount),
            Some(s) if s != secret => Err(LoginRefused::WrongSecret),
            Some(_) => Ok(()),
        }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<T> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` items arrived and returns them all; panics after `timeout`
    /// with what did arrive.
    pub async fn wait_received(&self, n: usize, timeout: Duration) -> Vec<T>
    where
        T: std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "the network received {} of {n} within {timeout:?}: {:?}",
                    received.len(),
                    received
                );
            }
        }
    }
}

/// A TCP server speaking lines (ending in `\r\n` or `\n`), for a bridge whose network is
/// reached over a socket. It takes any number of connections; the test sees every line any
/// connection wrote and writes to every connection. Dropping it stops it.
#[derive(Debug)]
pub struct LineServer {
    port: u16,
    shared: Arc<LineShared>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct LineShared {
    /// (connection number, line) in arrival order.
    lines: Mutex<Vec<(usize, String)>>,
    writers: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    arrived: Notify,
}

impl LineServer {
    /// Listens on a free loopback port. Call it inside a Tokio runtime.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the loopback interface has a free port");
        let port = listener.local_addr().expect("a bound address").port();
        let shared = Arc::new(LineShared::default());
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            port,
            shared,
            accept,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, for a bridge's config.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.writers.lock().unwrap().len()
    }

    /// Every line received so far (without its line ending), in order.
    pub fn lines(&self) -> Vec<String> {
        self.shared
            .lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Every line received so far with the number of the connection (from 1, in the order
    /// they were accepted) that wrote it.
    pub fn lines_by_connection(&self) -> Vec<(usize, String)> {
        self.shared.lines.lock().unwrap().clone()
    }

    /// Writes `line` (a line ending is added) to connection `connection` only.
    pub fn send_to(&self, connection: usize, line: &str) {
        let writers = self.shared.writers.lock().unwrap();
        if let Some(writer) = connection.checked_sub(1).and_then(|i| writers.get(i)) {
            let _ = writer.send(format!("{line}\r\n"));
        }
    }

    /// Waits for a line (received so far or later) for which `matches(connection, line)`
    /// holds and returns both. Panics after `timeout` with the lines that did arrive.
    pub async fn wait_for_line_by(
        &self,
        timeout: Duration,
        matches: impl Fn(usize, &str) -> bool,
    ) -> (usize, String) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            if let Some(found) = self
                .lines_by_connection()
                .into_iter()
                .find(|(c, l)| matches(*c, l))
            {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let seen: Vec<String> = self
                    .lines_by_connection()
                    .iter()
                    .map(|(c, l)| format!("{c}: {l}"))
                    .collect();
                panic!(
                    "no matching line within {timeout:?}; received:\n{}",
                    seen.join("\n")
                );
            }
        }
    }

    /// Writes `line` (a line ending is added) to every open connection.
    pub fn send(&self, line: &str) {
        let writers = self.shared.writers.lock().unwrap();
        for writer in writers.iter() {
            let _ = writer.send(format!("{line}\r\n"));
        }
    }

    /// Waits for a line (received so far or later) for which `matches` holds and returns it.
    /// Panics after `timeout` with the lines that did arrive.
    pub async fn wait_for_line(&self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                return line;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "no matching line within {timeout:?}; received:\n{}",
                    self.lines().join("\n")
                );
            }
        }
    }

    /// Waits for a line starting with `prefix` (`"JOIN #chan"`, `"PRIVMSG #chan :"`).
    pub async fn wait_for_line_starting(&self, prefix: &str, timeout: Duration) -> String {
        self.wait_for_line(timeout, |l| l.starts_with(prefix)).await
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts connections until the server is dropped; each gets a reader and a writer task.
async fn accept_loop(listener: TcpListener, shared: Arc<LineShared>) {
    while let Ok((socket, _)) = listener.accept().await {
        let (read, mut write) = socket.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let n = {
            let mut writers = shared.writers.lock().unwrap();
            writers.push(tx);
            writers.len()
        };
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if write.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = line.trim_end_matches('\r').to_owned();
                shared.lines.lock().unwrap().push((n, line));
                shared.arrived.notify_waiters();
            }
        });
    }
}
