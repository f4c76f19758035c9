//! End-to-end: the real `irc-bridge` binary between a real Synapse and a real IRC server
//! (ngircd from Debian's packages, installed by `tests/irc/ensure-ngircd.sh` when missing),
//! both on loopback. Every direction of the bridge is checked as users see it.

#[path = "../e2e/harness.rs"]
#[allow(dead_code)] // shared with the echo tests, which use all of it
mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Env, SERIAL, User, q, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

mod puppets;

/// The `network` section of the bridge under test (set by each test before its `Env`).
static NETWORK: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

pub(crate) fn bridge_spec() -> harness::Spec {
    let network = NETWORK.lock().unwrap().clone();
    assert!(!network.is_empty(), "the IRC server starts first");
    harness::Spec {
        binary: env!("CARGO_BIN_EXE_irc-bridge"),
        id: "irc",
        extra_config: format!("network: {network}\n"),
    }
}

/// ngircd in a temporary directory; stopped on drop.
struct IrcServer {
    child: Child,
    binary: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl IrcServer {
    fn start() -> (Self, u16) {
        Self::start_with_password(None)
    }

    /// Starts ngircd; with `password`, every client must give it (`PASS`).
    fn start_with_password(password: Option<&str>) -> (Self, u16) {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/irc/ensure-ngircd.sh"
        );
        let out = Command::new("bash").arg(script).output().unwrap();
        assert!(out.status.success(), "ngircd is needed for this test");
        let binary = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(&binary, &dir, port, password);
        (
            Self {
                child,
                binary,
                port,
                dir,
            },
            port,
        )
    }

    fn spawn(binary: &str, dir: &tempfile::TempDir, port: u16, password: Option<&str>) -> Child {
        let conf = dir.path().join("ngircd.conf");
        let password = password
            .map(|p| format!(" Password = {p}\n"))
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "[Global]\n Name = irc.bridgekit.test\n Info = bridgekit test network\n \
                 AdminInfo1 = tests\n AdminEMail = tests@localhost\n Listen = 127.0.0.1\n Ports = {port}\n{password}\
                 [Limits]\n MaxConnectionsIP = 0\n MaxNickLength = 30\n\
                 [Options]\n DNS = no\n Ident = no\n PAM = no\n"
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .args(["-n", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "ngircd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Stops the server (every connection drops).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, with `password`.
    fn restart(&mut self, password: Option<&str>) {
        self.stop();
        self.child = Self::spawn(&self.binary, &self.dir, self.port, password);
    }
}

impl Drop for IrcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain IRC user, speaking the protocol by hand.
struct IrcUser {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    seen: Vec<String>,
}

impl IrcUser {
    async fn connect(port: u16, nick: &str) -> Self {
        Self::connect_with(port, nick, None).await
    }

    async fn connect_with(port: u16, nick: &str, password: Option<&str>) -> Self {
        let (read, write) = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap()
            .into_split();
        let mut user = Self {
            lines: BufReader::new(read).lines(),
            write,
            seen: Vec::new(),
        };
        if let Some(password) = password {
            user.send(&format!("PASS {password}")).await;
        }
        user.send(&format!("NICK {nick}")).await;
        user.send(&format!("USER {nick} 0 * :{nick}")).await;
        user.expect(" 001 ").await;
        user
    }

    async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Reads until a line containing `needle` arrives (answering PINGs); returns it.
    async fn expect(&mut self, needle: &str) -> String {
        if let Some(i) = self.seen.iter().position(|l| l.contains(needle)) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!("no IRC line containing {needle:?}; saw {:#?}", self.seen)
                })
                .unwrap()
                .expect("the IRC server closed the connection");
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {token}")).await;
                continue;
            }
            if line.contains(needle) {
                return line;
            }
            self.seen.push(line);
        }
    }
}

/// Waits for an invite to a room other than `except` and joins it.
async fn accept_invite(user: &User, except: &str) -> String {
    let room = wait_for("an invite to the portal", || async {
        let (_, sync) = user
            .call(Method::GET, "/_matrix/client/v3/sync?timeout=0", None)
            .await;
        sync["rooms"]["invite"]
            .as_object()
            .and_then(|rooms| rooms.keys().find(|r| r.as_str() != except).cloned())
    })
    .await;
    let (status, body) = user
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", q(&room)),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    room
}

async fn message_from(user: &User, room: &str, sender: &str, body: &str) -> Value {
    wait_for(&format!("{body:?} from {sender}"), || async {
        user.timeline(room).await.into_iter().find(|e| {
            e["type"] == "m.room.message" && e["sender"] == sender && e["content"]["body"] == body
        })
    })
    .await
}

async fn membership(user: &User, room: &str, member: &str) -> Option<String> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
        q(room),
        q(member)
    );
    let (status, body) = user.call(Method::GET, &path, None).await;
    (status == 200).then(|| body["membership"].as_str().unwrap_or("").to_owned())
}

async fn topic(user: &User, room: &str) -> Option<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", q(room));
    let (_, body) = user.call(Method::GET, &path, None).await;
    body["topic"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_and_matrix_talk_both_ways_through_the_bridge() {
    let _serial = SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_ircd, port) = IrcServer::start();
    *NETWORK.lock().unwrap() = format!("{{server: '127.0.0.1:{port}', nick: matrix}}");

    // An IRC user is first in the channel (so it is an operator), and lets anyone set topics.
    let mut tester = IrcUser::connect(port, "tester").await;
    tester.send("JOIN #test").await;
    tester.expect("JOIN").await;
    tester.send("MODE #test -t").await;

    let env = Env::start().await;
    let alice = env.user("alice").await;
    let management = alice.room_with_bot(&env.bot).await;

    // Commands in the management room.
    alice.send_text(&management, "!help").await;
    notice_containing(&alice, &management, &env.bot, "!join <#channel>").await;
    alice.send_text(&management, "!version").await;
    notice_containing(&alice, &management, &env.bot, "irc-bridge").await;
    alice.send_text(&management, "!join rust").await;
    notice_containing(&alice, &management, &env.bot, "usage: join <#channel>").await;

    // Bridging a channel: the relay joins it, and alice is invited to its portal room.
    alice.send_text(&management, "!join #test").await;
    notice_containing(&alice, &management, &env.bot, "#test is bridged").await;
    tester.expect(":matrix!").await;
    let portal = accept_invite(&alice, &management).await;
    let (_, state) = alice
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/rooms/{}/state", q(&portal)),
            None,
        )
        .await;
    let bridge_info = state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.bridge")
        .expect("the portal carries m.bridge");
    assert_eq!(bridge_info["content"]["channel"]["id"], "#test");
    assert_eq!(bridge_info["content"]["bridgebot"], env.bot.as_str());

    // Matrix → IRC: text, emote and notice through the relay.
    alice.send_text(&portal, "hello irc").await;
    tester.expect("PRIVMSG #test :<alice> hello irc").await;
    alice
        .send(&portal, json!({"msgtype": "m.emote", "body": "waves"}))
        .await;
    tester
        .expect("PRIVMSG #test :\u{1}ACTION alice waves\u{1}")
        .await;
    alice
        .send(&portal, json!({"msgtype": "m.notice", "body": "fyi"}))
        .await;
    tester.expect("NOTICE #test :<alice> fyi").await;
    // An edit goes out as a correction.
    let typo = alice.send_text(&portal, "helo").await;
    tester.expect("<alice> helo").await;
    alice
        .send(
            &portal,
            json!({"msgtype": "m.text", "body": "* hello",
                   "m.new_content": {"msgtype": "m.text", "body": "hello"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": typo}}),
        )
        .await;
    tester.expect("PRIVMSG #test :<alice> * hello").await;

    // IRC → Matrix: text, ACTION and NOTICE from the nick's ghost, named after the nick.
    let ghost = "@_irc_tester:localhost";
    tester.send("PRIVMSG #test :hi matrix").await;
    let text = message_from(&alice, &portal, ghost, "hi matrix").await;
    assert_eq!(text["content"]["msgtype"], "m.text");
    tester.send("PRIVMSG #test :\u{1}ACTION dances\u{1}").await;
    let emote = message_from(&alice, &portal, ghost, "dances").await;
    assert_eq!(emote["content"]["msgtype"], "m.emote");
    tester.send("NOTICE #test :careful").await;
    let notice = message_from(&alice, &portal, ghost, "careful").await;
    assert_eq!(notice["content"]["msgtype"], "m.notice");
    assert_eq!(displayname(&alice, ghost).await.as_deref(), Some("tester"));

    // Topics, both ways.
    tester.send("TOPIC #test :set on irc").await;
    wait_for("the IRC topic in Matrix", || async {
        (topic(&alice, &portal).await.as_deref() == Some("set on irc")).then_some(())
    })
    .await;
    let (status, body) = alice
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
                q(&portal)
            ),
            Some(json!({"topic": "set on matrix"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tester.expect("TOPIC #test :set on matrix").await;

    // JOIN, PART, KICK and QUIT of another IRC user move its ghost.
    let bob_ghost = "@_irc_bob:localhost";
    let mut bob = IrcUser::connect(port, "bob").await;
    for (action, by) in [
        ("PART #test :later", None),
        ("KICK #test bob :behave", Some("tester")),
        ("QUIT :gone", None),
    ] {
        bob.send("JOIN #test").await;
        wait_membership(&alice, &portal, bob_ghost, "join").await;
        match by {
            Some(_) => tester.send(action).await,
            None => bob.send(action).await,
        }
        let left = wait_membership(&alice, &portal, bob_ghost, "leave").await;
        if let Some(kicker) = by {
            assert_eq!(
                left["sender"],
                env.bot.as_str(),
                "the bot carries out kicks"
            );
            let reason = left["content"]["reason"].as_str().unwrap_or("");
            assert!(reason.contains(&format!("kicked by {kicker}")), "{reason}");
        }
    }

    // A nick change renames the same ghost; its messages keep coming from it.
    tester.send("NICK tester2").await;
    wait_for("the ghost renamed", || async {
        (displayname(&alice, ghost).await.as_deref() == Some("tester2")).then_some(())
    })
    .await;
    tester.send("PRIVMSG #test :still me").await;
    message_from(&alice, &portal, ghost, "still me").await;
    assert_eq!(
        membership(&alice, &portal, "@_irc_tester2:localhost").await,
        None,
        "no second ghost for the new nick"
    );
}

async fn wait_membership(user: &User, room: &str, member: &str, wanted: &str) -> Value {
    wait_for(&format!("{member} to {wanted}"), || async {
        user.timeline(room)
            .await
            .into_iter()
            .rev()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == member)
            .filter(|e| e["content"]["membership"] == wanted)
    })
    .await
}

async fn displayname(user: &User, member: &str) -> Option<String> {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", q(member));
    let (_, body) = user.call(Method::GET, &path, None).await;
    body["displayname"].as_str().map(str::to_owned)
}

async fn notice_containing(user: &User, room: &str, sender: &str, needle: &str) -> Value {
    wait_for(&format!("a notice containing {needle:?}"), || async {
        user.timeline(room).await.into_iter().find(|e| {
            e["sender"] == sender
                && e["content"]["msgtype"] == "m.notice"
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(needle))
        })
    })
    .await
}
