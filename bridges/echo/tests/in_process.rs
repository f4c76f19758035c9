//! The echo bridge, tested in-process with bridgekit-testkit: alice writes in a room with the
//! bot, and her echo answers from the ghost standing for her — as she wrote it, edited when
//! she edits, gone when she redacts.

use std::sync::Arc;
use std::time::Duration;

use bridgekit::RemoteUserId;
use bridgekit_testkit::{MatrixUser, RoomEvent, TestBridge, TestHomeserver};
use echo_bridge::EchoBridge;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// A homeserver, the echo bridge, and alice in a room with its bot.
struct Scene {
    hs: Arc<TestHomeserver>,
    bridge: TestBridge,
    alice: MatrixUser,
    room: String,
    /// The ghost echoing alice.
    echo: String,
}

async fn scene() -> Scene {
    let hs = TestHomeserver::start();
    let bridge = TestBridge::start(&hs, EchoBridge).await;
    let alice = hs.user("alice");
    alice.set_displayname("Alice");
    let room = alice.create_room();
    alice.invite(&room, bridge.bot_user_id().as_str());
    let echo = bridge
        .ghost_user_id(&RemoteUserId::new("alice").unwrap())
        .to_string();
    Scene {
        hs,
        bridge,
        alice,
        room,
        echo,
    }
}

impl Scene {
    /// The echo of the event `original`.
    async fn echo_of(&self, what: &str, pred: impl Fn(&RoomEvent) -> bool) -> RoomEvent {
        self.hs
            .wait_for(&self.room, what, WAIT, |e| e.sender == self.echo && pred(e))
            .await
    }
}

#[tokio::test]
async fn a_message_comes_back_from_alices_ghost_under_her_name() {
    let s = scene().await;
    s.alice.say(&s.room, "hello");
    let echo = s.echo_of("the echo", |e| e.body() == Some("hello")).await;
    assert_eq!(echo.msgtype(), Some("m.text"));
    assert_eq!(s.hs.displayname(&s.echo).as_deref(), Some("Alice (echo)"));
    assert_eq!(
        s.hs.members(&s.room).get(&s.echo).map(String::as_str),
        Some("join"),
        "the ghost joined the portal"
    );
    // Exactly one echo: the ghost's own message, reflected back to the bridge, is not echoed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let echoes =
        s.hs.messages(&s.room)
            .into_iter()
            .filter(|e| e.sender == s.echo)
            .count();
    assert_eq!(echoes, 1);
}

#[tokio::test]
async fn emotes_notices_and_formatting_come_back_as_they_went() {
    let s = scene().await;
    s.alice.emote(&s.room, "waves");
    s.alice.notice(&s.room, "build passed");
    s.alice.say_html(&s.room, "bold move", "<b>bold</b> move");
    let emote = s.echo_of("the emote", |e| e.body() == Some("waves")).await;
    assert_eq!(emote.msgtype(), Some("m.emote"));
    let notice = s
        .echo_of("the notice", |e| e.body() == Some("build passed"))
        .await;
    assert_eq!(notice.msgtype(), Some("m.notice"));
    let html = s
        .echo_of("the formatted text", |e| e.body() == Some("bold move"))
        .await;
    assert_eq!(html.content["format"], "org.matrix.custom.html");
    assert_eq!(html.content["formatted_body"], "<b>bold</b> move");
    // Echoes arrive in the order alice wrote.
    let order: Vec<String> =
        s.hs.messages(&s.room)
            .into_iter()
            .filter(|e| e.sender == s.echo)
            .filter_map(|e| e.body().map(str::to_owned))
            .collect();
    assert_eq!(order, ["waves", "build passed", "bold move"]);
}

#[tokio::test]
async fn a_file_comes_back_by_reference() {
    let s = scene().await;
    s.alice.send(
        &s.room,
        "m.room.message",
        json!({"msgtype": "m.image", "body": "cat.png", "url": "mxc://localhost/cat",
               "info": {"mimetype": "image/png"}}),
    );
    let image = s
        .echo_of("the image", |e| e.body() == Some("cat.png"))
        .await;
    assert_eq!(image.msgtype(), Some("m.image"));
    assert_eq!(image.content["url"], "mxc://localhost/cat");
}

#[tokio::test]
async fn editing_and_redacting_the_original_edit_and_redact_the_echo() {
    let s = scene().await;
    let original = s.alice.say(&s.room, "helo");
    let echo = s.echo_of("the echo", |e| e.body() == Some("helo")).await;

    s.alice.edit(&s.room, &original, "hello");
    let edit = s
        .echo_of("the echo's edit", |e| {
            e.is_edit() && e.relates_to() == Some(&echo.event_id)
        })
        .await;
    assert_eq!(edit.content["m.new_content"]["body"], "hello");

    s.alice.redact(&s.room, &original, Some("typo"));
    s.hs.wait_for(&s.room, "the echo's redaction", WAIT, |e| {
        e.event_type == "m.room.redaction" && e.redacts.as_deref() == Some(&echo.event_id)
    })
    .await;
    assert!(s.hs.event(&echo.event_id).unwrap().redacted);
}

#[tokio::test]
async fn after_a_restart_edits_still_find_their_echo() {
    let mut s = scene().await;
    let original = s.alice.say(&s.room, "before");
    let echo = s.echo_of("the echo", |e| e.body() == Some("before")).await;
    s.bridge.restart(EchoBridge).await;
    s.alice.edit(&s.room, &original, "after");
    let edit = s
        .echo_of("the edit", |e| {
            e.is_edit() && e.relates_to() == Some(&echo.event_id)
        })
        .await;
    assert_eq!(edit.content["m.new_content"]["body"], "after");
}

#[tokio::test]
async fn an_encrypted_message_gets_a_clear_notice_instead_of_silence() {
    let s = scene().await;
    let encrypted = s.alice.send(
        &s.room,
        "m.room.encrypted",
        json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
            "device_id": "ALICEDEVICE",
            "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
            "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ"
        }),
    );
    let bot = s.bridge.bot_user_id().to_string();
    let notice =
        s.hs.wait_for(&s.room, "a notice about encryption", WAIT, |e| {
            e.sender == bot
                && e.body()
                    .is_some_and(|b| b.contains("does not support encrypted rooms"))
        })
        .await;
    assert_eq!(notice.msgtype(), Some("m.notice"));
    assert_eq!(
        notice.content["m.relates_to"]["m.in_reply_to"]["event_id"],
        encrypted.as_str(),
        "it answers the message it could not read"
    );
    // A plain message afterwards is still echoed: the room goes on.
    s.alice.say(&s.room, "in the clear");
    s.echo_of("the echo", |e| e.body() == Some("in the clear"))
        .await;
    assert_eq!(
        s.hs.messages(&s.room)
            .iter()
            .filter(|e| e.sender == s.echo)
            .count(),
        1
    );
}
