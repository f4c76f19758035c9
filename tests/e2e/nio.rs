//! A real encrypting client for the tests: `nio/driver.py` (matrix-nio with vodozemac,
//! installed into a cache venv by `nio/ensure.sh`), one process per device, driven with one
//! JSON command per line.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const ENSURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/nio/ensure.sh");
const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/e2e/nio/driver.py");

/// One device of a user, logged in with the user's password.
pub struct Nio {
    pub user_id: String,
    pub device_id: String,
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Nio {
    /// Logs `user_id` (registered by the harness with password `pw-<localpart>`) in on a new
    /// device whose keys live in `store`.
    pub async fn login(hs_url: &str, user_id: &str, store: &std::path::Path) -> Nio {
        let out = std::process::Command::new("bash")
            .arg(ENSURE)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "installing matrix-nio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        std::fs::create_dir_all(store).unwrap();
        let localpart = user_id.trim_start_matches('@').split(':').next().unwrap();
        let mut child = Command::new(python)
            .arg(DRIVER)
            .arg(hs_url)
            .arg(user_id)
            .arg(format!("pw-{localpart}"))
            .arg(store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut nio = Nio {
            user_id: user_id.to_owned(),
            device_id: String::new(),
            child,
            stdin,
            stdout,
        };
        let started = nio.answer().await;
        nio.device_id = started["device_id"].as_str().unwrap().to_owned();
        nio
    }

    async fn answer(&mut self) -> Value {
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(90), self.stdout.next_line())
                .await
                .expect("the nio driver answers within 90 s")
                .unwrap()
                .expect("the nio driver is running");
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert!(
            answer.get("error").is_none(),
            "nio ({}): {}",
            self.user_id,
            answer["error"]
        );
        answer
    }

    /// Runs one command (see driver.py) and answers its result.
    pub async fn run(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.answer().await
    }

    /// A new room, encrypted unless `encrypted` is false, with `invite` invited.
    pub async fn create_room(&mut self, invite: &[&str], encrypted: bool) -> String {
        let answer = self
            .run(json!({"cmd": "create_room", "invite": invite, "encrypted": encrypted}))
            .await;
        answer["room_id"].as_str().unwrap().to_owned()
    }

    /// Waits until `user` is joined to `room` as this device sees it.
    pub async fn wait_joined(&mut self, room: &str, user: &str) {
        self.run(json!({"cmd": "wait_joined", "room": room, "user": user}))
            .await;
    }

    /// Sends a text message (encrypted in an encrypted room).
    pub async fn send(&mut self, room: &str, body: &str) -> String {
        let answer = self
            .run(json!({"cmd": "send", "room": room, "body": body}))
            .await;
        answer["event_id"].as_str().unwrap().to_owned()
    }

    /// Edits `event_id` to read `body`.
    pub async fn edit(&mut self, room: &str, event_id: &str, body: &str) -> String {
        let answer = self
            .run(json!({"cmd": "edit", "room": room, "event_id": event_id, "body": body}))
            .await;
        answer["event_id"].as_str().unwrap().to_owned()
    }

    /// Waits for a message from `sender` reading `body`, as this device decrypted it:
    /// answers whether it was encrypted on the wire.
    pub async fn wait_message(&mut self, room: &str, sender: &str, body: &str) -> bool {
        let answer = self
            .run(json!({"cmd": "wait_message", "room": room, "sender": sender, "body": body}))
            .await;
        answer["encrypted"].as_bool().unwrap()
    }

    /// Joins `room`.
    pub async fn join(&mut self, room: &str) {
        self.run(json!({"cmd": "join", "room": room})).await;
    }

    /// Invites `user` to `room`.
    pub async fn invite(&mut self, room: &str, user: &str) {
        self.run(json!({"cmd": "invite", "room": room, "user": user}))
            .await;
    }
}

impl Drop for Nio {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
