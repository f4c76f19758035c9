//! One connection to the IRC server (the relay's, or a logged-in user's): registers (with
//! the server password when there is one), answers PINGs, keeps the channels joined,
//! reconnects (re-joining) when the connection drops, and reports how it stands.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irc_proto::{Command, Message, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How to connect.
#[derive(Clone)]
pub struct Options {
    /// `host:port`.
    pub server: String,
    /// The nick to ask for.
    pub nick: String,
    /// The server password (`PASS`), if the server needs one.
    pub password: Option<String>,
    /// What to do when the nick is taken.
    pub nick_taken: NickTaken,
    /// The pause before reconnect attempt `n`.
    pub reconnect_delay: fn(u32) -> Duration,
}

/// What a connection does when the server says its nick is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NickTaken {
    /// Try the nick with `_` appended (the relay: any nick will do).
    Rename,
    /// Try again later (a user's own nick may be held for a moment by their previous
    /// connection).
    Retry,
    /// Give up (trying a nick at login).
    Fail,
}

/// How a connection stands, as it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Registered with this nick.
    Connected(String),
    /// The connection dropped; reconnecting.
    Lost(String),
    /// The nick is taken (and may not be changed): stopped.
    NickTaken(String),
    /// The server refused us (a wrong password, a ban): stopped.
    Refused(String),
}

/// Sends lines to the server and tracks the channels the connection should be in.
#[derive(Clone)]
pub struct IrcHandle {
    outgoing: mpsc::UnboundedSender<Message>,
    channels: Arc<Mutex<BTreeSet<String>>>,
    /// The nick the server accepted (it may have had to change).
    nick: Arc<Mutex<String>>,
    quit: Arc<tokio::sync::Notify>,
    /// Whether the connection is registered now (lines sent meanwhile would wait in memory).
    registered: Arc<std::sync::atomic::AtomicBool>,
}

impl IrcHandle {
    /// Queues a line for the server (sent once connected).
    pub fn send(&self, message: Message) {
        let _ = self.outgoing.send(message);
    }

    /// Joins `channel` now and after every reconnect.
    pub fn join(&self, channel: &str) {
        let new = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_lowercase());
        if new {
            self.send(Command::JOIN(channel.to_owned(), None, None).into());
        }
    }

    /// Leaves `channel` now and for good.
    pub fn part(&self, channel: &str) {
        let was = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&channel.to_lowercase());
        if was {
            self.send(Command::PART(channel.to_owned(), None).into());
        }
    }

    /// The connection's current nick.
    pub fn nick(&self) -> String {
        self.nick.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the connection is up and registered now.
    pub fn is_up(&self) -> bool {
        self.registered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Says goodbye to the server and stops reconnecting.
    pub fn quit(&self) {
        self.quit.notify_one();
    }
}

/// The relay's pacing: from half a second, doubling to 30 s.
pub fn relay_delay(attempt: u32) -> Duration {
    (Duration::from_millis(500) * 2u32.saturating_pow(attempt.min(6))).min(Duration::from_secs(30))
}

/// Connects as `options` say and keeps the connection up. Lines from the server go to
/// `incoming`, in order; changes of how it stands go to `status`.
pub fn start(
    options: Options,
    incoming: mpsc::UnboundedSender<Message>,
    status: mpsc::UnboundedSender<Status>,
) -> IrcHandle {
    let (outgoing, mut queued) = mpsc::unbounded_channel::<Message>();
    let handle = IrcHandle {
        outgoing,
        channels: Arc::default(),
        nick: Arc::new(Mutex::new(options.nick.clone())),
        quit: Arc::default(),
        registered: Arc::default(),
    };
    let state = handle.clone();
    tokio::spawn(async move {
        let mut attempt = 0;
        let mut nick_in_use = 0;
        loop {
            let ended = session(&options, &state, &incoming, &status, &mut queued).await;
            state
                .registered
                .store(false, std::sync::atomic::Ordering::SeqCst);
            match ended {
                Ended::Gone => return,
                Ended::Stopped(why) => {
                    let _ = status.send(why);
                    return;
                }
                Ended::NickInUse => {
                    nick_in_use += 1;
                    if nick_in_use >= NICK_RETRIES {
                        let _ = status.send(Status::NickTaken(state.nick()));
                        return;
                    }
                    let delay = (options.reconnect_delay)(attempt);
                    attempt += 1;
                    let _ =
                        status.send(Status::Lost(format!("the nick {} is in use", state.nick())));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = state.quit.notified() => return,
                    }
                }
                Ended::Failed(error, registered) => {
                    if registered {
                        attempt = 0;
                        nick_in_use = 0;
                    }
                    let delay = (options.reconnect_delay)(attempt);
                    attempt += 1;
                    tracing::warn!(%error, server = %options.server, nick = %state.nick(), "IRC connection lost; reconnecting in {delay:?}");
                    let _ = status.send(Status::Lost(error.to_string()));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = state.quit.notified() => return,
                    }
                }
            }
        }
    });
    handle
}

/// How a session ended.
enum Ended {
    /// The bridge side is gone.
    Gone,
    /// The server will not have us: do not reconnect.
    Stopped(Status),
    /// The connection failed (after registering, or not).
    Failed(std::io::Error, bool),
    /// The nick is in use (and is to be tried again).
    NickInUse,
}

/// How many times in a row a nick in use is tried again before giving up.
const NICK_RETRIES: u32 = 5;

/// One connection, until it ends.
async fn session(
    options: &Options,
    state: &IrcHandle,
    incoming: &mpsc::UnboundedSender<Message>,
    status: &mpsc::UnboundedSender<Status>,
    queued: &mut mpsc::UnboundedReceiver<Message>,
) -> Ended {
    let mut registered = false;
    match run(options, state, incoming, status, queued, &mut registered).await {
        Ok(ended) => ended,
        Err(error) => Ended::Failed(error, registered),
    }
}

async fn run(
    options: &Options,
    state: &IrcHandle,
    incoming: &mpsc::UnboundedSender<Message>,
    status: &mpsc::UnboundedSender<Status>,
    queued: &mut mpsc::UnboundedReceiver<Message>,
    registered: &mut bool,
) -> std::io::Result<Ended> {
    let stream = TcpStream::connect(&options.server).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let nick = state.nick();
    let mut register = String::new();
    if let Some(password) = &options.password {
        register.push_str(&format!("PASS {password}\r\n"));
    }
    register.push_str(&format!(
        "NICK {nick}\r\nUSER {nick} 0 * :bridgekit IRC bridge\r\n"
    ));
    write.write_all(register.as_bytes()).await?;
    loop {
        tokio::select! {
            _ = state.quit.notified() => {
                let _ = write.write_all(b"QUIT :logged out\r\n").await;
                return Ok(Ended::Gone);
            }
            line = lines.next_line() => {
                let Some(line) = line? else {
                    return Err(std::io::Error::other("the server closed the connection"));
                };
                let message: Message = match line.parse() {
                    Ok(m) => m,
                    Err(error) => {
                        tracing::debug!(%error, %line, "skipping an unparsable IRC line");
                        continue;
                    }
                };
                match &message.command {
                    Command::PING(token, _) => {
                        write.write_all(format!("PONG :{token}\r\n").as_bytes()).await?;
                    }
                    Command::Response(Response::RPL_WELCOME, args) => {
                        *registered = true;
                        state.registered.store(true, std::sync::atomic::Ordering::SeqCst);
                        if let Some(accepted) = args.first() {
                            *state.nick.lock().unwrap_or_else(|e| e.into_inner()) = accepted.clone();
                        }
                        let channels: Vec<String> =
                            state.channels.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
                        for channel in channels {
                            write.write_all(format!("JOIN {channel}\r\n").as_bytes()).await?;
                        }
                        tracing::info!(server = %options.server, nick = %state.nick(), "connected to IRC");
                        let _ = status.send(Status::Connected(state.nick()));
                    }
                    Command::Response(Response::ERR_NICKNAMEINUSE, _) if !*registered => {
                        match options.nick_taken {
                            NickTaken::Fail => return Ok(Ended::Stopped(Status::NickTaken(state.nick()))),
                            NickTaken::Retry => return Ok(Ended::NickInUse),
                            NickTaken::Rename => {}
                        }
                        let next = format!("{}_", state.nick());
                        *state.nick.lock().unwrap_or_else(|e| e.into_inner()) = next.clone();
                        write.write_all(format!("NICK {next}\r\n").as_bytes()).await?;
                    }
                    Command::Response(Response::ERR_PASSWDMISMATCH, args) => {
                        let why = args.last().cloned().unwrap_or_else(|| "password incorrect".into());
                        return Ok(Ended::Stopped(Status::Refused(why)));
                    }
                    Command::ERROR(why) if !*registered => {
                        return Ok(Ended::Stopped(Status::Refused(why.clone())));
                    }
                    _ => {}
                }
                if incoming.send(message).is_err() {
                    return Ok(Ended::Gone);
                }
            }
            out = queued.recv(), if *registered => {
                let Some(message) = out else { return Ok(Ended::Gone) };
                write.write_all(message.to_string().as_bytes()).await?;
            }
        }
    }
}
