//! End-to-bridge encryption against a real Synapse with a real encrypting client (matrix-nio
//! with vodozemac): the echo bridge, unchanged, in encrypted rooms.

use super::GHOST;
use crate::harness::{Env, SERIAL, User};
use crate::nio::Nio;

const ENCRYPTED: &str = "encryption: {allow: true}\n";

/// The ghost's messages in `room` as the homeserver stores them: their wire types.
async fn ghost_event_types(user: &User, room: &str) -> Vec<String> {
    user.timeline(room)
        .await
        .into_iter()
        .filter(|e| e["sender"] == GHOST && e.get("state_key").is_none())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn encrypted_room_with_bot(env: &Env, nio: &mut Nio) -> String {
    let room = nio.create_room(&[&env.bot], true).await;
    nio.wait_joined(&room, &env.bot).await;
    room
}

/// Alice, her phone (a real encrypting client) and an encrypted room with the bot.
async fn alice_in_an_encrypted_room(env: &Env) -> (User, Nio, String) {
    let alice = env.user("alice").await;
    let mut phone = Nio::login(&env.hs_url, &alice.user_id, &env.dir.path().join("nio-a")).await;
    let room = encrypted_room_with_bot(env, &mut phone).await;
    (alice, phone, room)
}

#[tokio::test]
async fn the_echo_bridge_answers_in_an_encrypted_room_and_its_echo_is_encrypted_on_the_wire() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::start_with(ENCRYPTED).await;
    let log = std::fs::read_to_string(env.bridge_log()).unwrap();
    assert!(log.contains("encryption on"), "{log}");
    let (alice, mut phone, room) = alice_in_an_encrypted_room(&env).await;

    let sent = phone.send(&room, "a secret hello").await;
    assert!(
        phone.wait_message(&room, GHOST, "a secret hello").await,
        "the echo came in plaintext"
    );
    let types = ghost_event_types(&alice, &room).await;
    assert!(
        !types.is_empty() && types.iter().all(|t| t == "m.room.encrypted"),
        "the ghost's events on the wire: {types:?}"
    );
    // The homeserver never saw the text.
    let raw = alice.timeline(&room).await;
    assert!(
        !serde_json::to_string(&raw)
            .unwrap()
            .contains("a secret hello"),
        "plaintext on the homeserver"
    );

    // An edit in the encrypted room is decrypted, bridged and its echo encrypted.
    phone.edit(&room, &sent, "a secret hello, edited").await;
    assert!(
        phone
            .wait_message(&room, GHOST, "a secret hello, edited")
            .await
    );

    // A plaintext room beside the encrypted one stays plaintext.
    let plain = phone.create_room(&[&env.bot], false).await;
    phone.wait_joined(&plain, &env.bot).await;
    phone.send(&plain, "in the clear").await;
    assert!(
        !phone.wait_message(&plain, GHOST, "in the clear").await,
        "the echo in a plaintext room was encrypted"
    );
}

#[tokio::test]
async fn encrypted_echoes_survive_a_restart_and_a_sigkill_and_reach_a_second_device_and_a_later_member()
 {
    let _serial = SERIAL.lock().await;
    crate::init();
    let mut env = Env::start_with(ENCRYPTED).await;
    let (alice, mut phone, room) = alice_in_an_encrypted_room(&env).await;
    phone.send(&room, "before").await;
    assert!(phone.wait_message(&room, GHOST, "before").await);

    // SIGKILL between messages: the device and its sessions come back from the store.
    env.kill_bridge();
    env.start_bridge().await;
    phone.send(&room, "after a kill").await;
    assert!(phone.wait_message(&room, GHOST, "after a kill").await);
    let log = std::fs::read_to_string(env.bridge_log()).unwrap();
    assert_eq!(
        log.matches("the bot's device is cross-signed").count(),
        1,
        "the device was set up again after the restart:\n{log}"
    );

    // A second device of alice's, logged in now, decrypts new echoes too.
    let mut laptop = Nio::login(&env.hs_url, &alice.user_id, &env.dir.path().join("nio-b")).await;
    phone.send(&room, "to both devices").await;
    assert!(laptop.wait_message(&room, GHOST, "to both devices").await);
    assert!(phone.wait_message(&room, GHOST, "to both devices").await);

    // A member who joins later decrypts the echoes sent after they joined.
    let bob = env.user("bob").await;
    let mut bobs = Nio::login(&env.hs_url, &bob.user_id, &env.dir.path().join("nio-c")).await;
    phone.invite(&room, &bob.user_id).await;
    bobs.join(&room).await;
    phone.wait_joined(&room, &bob.user_id).await;
    // Bob's join comes before the next message in the room's order, so the bridge reads
    // the new member list before it echoes.
    phone.send(&room, "bob can read this").await;
    assert!(bobs.wait_message(&room, GHOST, "bob can read this").await);

    // A clean restart too.
    env.terminate_bridge();
    env.start_bridge().await;
    phone.send(&room, "after a restart").await;
    assert!(bobs.wait_message(&room, GHOST, "after a restart").await);
    assert!(laptop.wait_message(&room, GHOST, "after a restart").await);
}

/// The ed25519 keys the bridge logged for its device, one per start.
fn device_keys_logged(env: &Env) -> Vec<String> {
    std::fs::read_to_string(env.bridge_log())
        .unwrap()
        .lines()
        .filter(|l| l.contains("encryption on"))
        .filter_map(|l| l.split("ed25519=").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn migrate_store_carries_the_device_to_postgres_where_encrypted_echoes_go_on() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let mut env = Env::start_with(ENCRYPTED).await;
    let (_alice, mut phone, room) = alice_in_an_encrypted_room(&env).await;
    phone.send(&room, "on sled").await;
    assert!(phone.wait_message(&room, GHOST, "on sled").await);
    env.terminate_bridge();

    let url = crate::postgres::cluster().url.clone();
    let schema = crate::postgres::fresh_schema("encrypted");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_echo-bridge"))
        .arg("--config")
        .arg(env.config_path())
        .args(["migrate-store", "--to-postgres", &url, "--schema", &schema])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(env.config_path()).unwrap().replace(
        "store: {path: store}",
        &format!("store: {{postgres_url: '{url}', postgres_schema: {schema}}}"),
    );
    std::fs::write(env.config_path(), config).unwrap();
    env.start_bridge().await;
    phone.send(&room, "on postgres").await;
    assert!(phone.wait_message(&room, GHOST, "on postgres").await);
    env.kill_bridge();
    env.start_bridge().await;
    phone.send(&room, "on postgres after a kill").await;
    assert!(
        phone
            .wait_message(&room, GHOST, "on postgres after a kill")
            .await
    );
    let keys = device_keys_logged(&env);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "the device changed on the way: {keys:?}"
    );
}

/// Claims one of the bot device's one-time keys as `user`: true when the homeserver had only
/// the fallback key left.
async fn claim_bot_key(user: &User, bot: &str, device: &str) -> bool {
    let (status, body) = user
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/claim",
            Some(serde_json::json!({"one_time_keys": {bot: {device: "signed_curve25519"}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let keys = body["one_time_keys"][bot][device]
        .as_object()
        .unwrap_or_else(|| panic!("no key for the bot's device: {body}"));
    keys.values().any(|k| k["fallback"] == true)
}

#[tokio::test]
async fn one_time_keys_drained_by_claims_are_replenished_and_a_new_device_still_gets_through() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::start_with(ENCRYPTED).await;
    let log = std::fs::read_to_string(env.bridge_log()).unwrap();
    let device = log
        .lines()
        .find(|l| l.contains("encryption on"))
        .and_then(|l| l.split("device_id=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the device ID is logged")
        .to_owned();
    let (alice, mut phone, room) = alice_in_an_encrypted_room(&env).await;

    // Someone claims every one-time key the device uploaded.
    let mut claims = 0;
    while !claim_bot_key(&alice, &env.bot, &device).await {
        claims += 1;
        assert!(claims < 500, "the one-time keys never ran out");
    }
    assert!(claims >= 10, "only {claims} one-time keys were uploaded");

    // The next transaction carries the device's key count; the bridge uploads new keys.
    phone.send(&room, "after the drain").await;
    assert!(phone.wait_message(&room, GHOST, "after the drain").await);
    let mut fresh = false;
    for _ in 0..50 {
        if !claim_bot_key(&alice, &env.bot, &device).await {
            fresh = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(fresh, "the bridge did not upload new one-time keys");

    // A device that logs in now establishes a session with the bot and is answered.
    let mut tablet = Nio::login(&env.hs_url, &alice.user_id, &env.dir.path().join("nio-t")).await;
    tablet.send(&room, "from a brand-new device").await;
    assert!(
        tablet
            .wait_message(&room, GHOST, "from a brand-new device")
            .await
    );
}

#[tokio::test]
async fn a_homeserver_without_to_device_delivery_stops_the_bridge_with_the_setting_to_add() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::synapse_only_with(ENCRYPTED, &[("SYNAPSE_NO_APPSERVICE_E2EE", "1")]).await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_echo-bridge"))
            .arg("--config")
            .arg(env.config_path())
            .output(),
    )
    .await
    .expect("the bridge gave up within a minute")
    .unwrap();
    assert!(
        !out.status.success(),
        "the bridge ran without to-device delivery"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("msc2409_to_device_messages_enabled: true")
            && last.contains("homeserver.yaml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_message_whose_key_never_arrives_is_reported_in_the_room_after_the_wait() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::start_with("encryption: {allow: true, key_wait_secs: 2}\n").await;
    let (alice, mut phone, room) = alice_in_an_encrypted_room(&env).await;
    // A real encrypted message from alice, its session ID changed to one nobody ever
    // shared, delivered as the homeserver would.
    phone.send(&room, "a real one").await;
    assert!(phone.wait_message(&room, GHOST, "a real one").await);
    let real = alice
        .timeline(&room)
        .await
        .into_iter()
        .find(|e| e["sender"] == alice.user_id.as_str() && e["type"] == "m.room.encrypted")
        .expect("alice's encrypted message");
    let mut content = real["content"].clone();
    content["session_id"] = "bm90IGEgcmVhbCBzZXNzaW9uIGlkIGF0IGFsbCwganVzdCBhIHRlc3Q".into();
    let event = serde_json::json!({
        "type": "m.room.encrypted",
        "event_id": "$never-shared:localhost",
        "room_id": room,
        "sender": alice.user_id,
        "origin_server_ts": 1,
        "content": content,
    });
    let started = std::time::Instant::now();
    let response = env
        .push_transaction("undecryptable-1", &serde_json::json!({"events": [event]}))
        .await;
    assert_eq!(response.status(), 200);
    let notice = phone
        .run(serde_json::json!({"cmd": "wait_message_containing", "room": room, "sender": env.bot, "text": "could not decrypt"}))
        .await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "reported before the key wait was over"
    );
    assert_eq!(
        notice["encrypted"], true,
        "the notice went out in plaintext"
    );
}

#[tokio::test]
async fn a_handler_is_told_which_messages_the_framework_decrypted() {
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::synapse_only_with(ENCRYPTED, &[]).await;
    let running = env.run_in_process().await;
    let (_alice, mut phone, room) = alice_in_an_encrypted_room(&env).await;
    phone.send(&room, "sealed").await;
    let plain = phone.create_room(&[&env.bot], false).await;
    phone.wait_joined(&plain, &env.bot).await;
    phone.send(&plain, "open").await;
    crate::harness::wait_for("both messages handed over", || async {
        let seen = running.seen.lock().unwrap().clone();
        let sealed = seen.iter().find(|l| l.starts_with("message \"sealed\""))?;
        let open = seen.iter().find(|l| l.starts_with("message \"open\""))?;
        Some((sealed.clone(), open.clone()))
    })
    .await;
    let seen = running.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("message \"sealed\"") && l.ends_with(" decrypted")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("message \"open\"") && !l.ends_with(" decrypted")),
        "{seen:#?}"
    );
    running.stop().await;
}
