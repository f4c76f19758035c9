//! The relay's one connection to the IRC server: registers, answers PINGs, keeps the
//! channels joined, and reconnects (re-joining) when the connection drops.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irc_proto::{Command, Message, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Sends lines to the server and tracks the channels the relay should be in.
#[derive(Clone)]
pub struct IrcHandle {
    outgoing: mpsc::UnboundedSender<Message>,
    channels: Arc<Mutex<BTreeSet<String>>>,
    /// The nick the server accepted (it may have had to change).
    nick: Arc<Mutex<String>>,
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

    /// The relay's current nick.
    pub fn nick(&self) -> String {
        self.nick.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Connects to `server` as `nick` and keeps the connection up. Lines from the server go to
/// `incoming`, in order.
pub fn start(server: String, nick: String, incoming: mpsc::UnboundedSender<Message>) -> IrcHandle {
    let (outgoing, mut queued) = mpsc::unbounded_channel::<Message>();
    let handle = IrcHandle {
        outgoing,
        channels: Arc::default(),
        nick: Arc::new(Mutex::new(nick)),
    };
    let state = handle.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(500);
        loop {
            match session(&server, &state, &incoming, &mut queued).await {
                Ok(()) => return, // the bridge is stopping
                Err(error) => {
                    tracing::warn!(%error, %server, "IRC connection lost; reconnecting in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    handle
}

/// One connection, until it fails. Returns `Ok` only when the bridge side is gone.
async fn session(
    server: &str,
    state: &IrcHandle,
    incoming: &mpsc::UnboundedSender<Message>,
    queued: &mut mpsc::UnboundedReceiver<Message>,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(server).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let nick = state.nick();
    let register = format!("NICK {nick}\r\nUSER {nick} 0 * :bridgekit IRC relay\r\n");
    write.write_all(register.as_bytes()).await?;
    let mut registered = false;
    loop {
        tokio::select! {
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
                        registered = true;
                        if let Some(accepted) = args.first() {
                            *state.nick.lock().unwrap_or_else(|e| e.into_inner()) = accepted.clone();
                        }
                        let channels: Vec<String> =
                            state.channels.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
                        for channel in channels {
                            write.write_all(format!("JOIN {channel}\r\n").as_bytes()).await?;
                        }
                        tracing::info!(%server, nick = %state.nick(), "connected to IRC");
                    }
                    Command::Response(Response::ERR_NICKNAMEINUSE, _) if !registered => {
                        let next = format!("{}_", state.nick());
                        *state.nick.lock().unwrap_or_else(|e| e.into_inner()) = next.clone();
                        write.write_all(format!("NICK {next}\r\n").as_bytes()).await?;
                    }
                    _ => {}
                }
                if incoming.send(message).is_err() {
                    return Ok(());
                }
            }
            out = queued.recv(), if registered => {
                let Some(message) = out else { return Ok(()) };
                write.write_all(message.to_string().as_bytes()).await?;
            }
        }
    }
}
