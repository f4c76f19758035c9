//! A crowd of new ghosts at once: twenty Matrix users write into one room for the first time,
//! together, so twenty ghosts register, join and send at the same moment. Synapse may answer
//! a ghost's send with 403 "not in room" for a while after accepting its join
//! (docs/homeserver-behaviour.md); every echo must still arrive, exactly once. Then they all
//! write again, to ghosts already joined (a busy room), and the test prints how long each
//! wave took to be echoed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Env, SERIAL, q};

const USERS: usize = 20;
const MESSAGES_EACH: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cold_ghosts_at_once_echo_every_message_exactly_once() {
    crate::init();
    let _serial = SERIAL.lock().await;
    let env = Env::start().await;
    let alice = env.user("alice").await;
    let room = alice.room_with_bot(&env.bot).await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.join_rules/",
        q(&room)
    );
    let (status, body) = alice
        .call(Method::PUT, &path, Some(json!({"join_rule": "public"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut users = Vec::new();
    for i in 0..USERS {
        let user = env.user(&format!("crowd{i:02}")).await;
        let path = format!("/_matrix/client/v3/join/{}", q(&room));
        let (status, body) = user.call(Method::POST, &path, Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
        users.push(user);
    }

    // Everyone writes at once: each user's ten messages go out back to back, all users
    // concurrently, so the first message of each user meets a ghost that does not exist yet.
    let cold = wave(&alice, &users, &room, "says").await;
    let log = std::fs::read_to_string(env.bridge_log()).unwrap_or_default();
    eprintln!(
        "sends refused as \"not in room\" and retried: {}",
        log.matches("does not see the user in the room yet").count()
    );
    // Again, with every ghost registered and joined: a busy room as it usually is.
    let warm = wave(&alice, &users, &room, "adds").await;
    eprintln!(
        "busy room, {USERS} users x {MESSAGES_EACH} messages at once on Synapse: cold ghosts: senders done after {:.1} s, every echo in the room {:.1} s after the first send; warm ghosts: {:.1} s / {:.1} s",
        cold.0.as_secs_f64(),
        cold.1.as_secs_f64(),
        warm.0.as_secs_f64(),
        warm.1.as_secs_f64()
    );
}

/// Every user writes ten messages (`crowdNN <verb> M`) back to back, all users at once; checks
/// that each is echoed exactly once. Returns how long after the first send the senders were
/// done and every echo was in the room.
async fn wave(
    reader: &crate::harness::User,
    users: &[crate::harness::User],
    room: &str,
    verb: &str,
) -> (Duration, Duration) {
    let start = Instant::now();
    let writers = users.iter().enumerate().map(|(i, user)| {
        let (user, room, verb) = (user.clone(), room.to_owned(), verb.to_owned());
        tokio::spawn(async move {
            for m in 0..MESSAGES_EACH {
                user.send_text(&room, &format!("crowd{i:02} {verb} {m}"))
                    .await;
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let senders_done = start.elapsed();

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counts: HashMap<(String, String), usize>;
    loop {
        counts = HashMap::new();
        for event in whole_timeline(reader, room).await {
            let sender = event["sender"].as_str().unwrap_or("");
            let body = event["content"]["body"].as_str().unwrap_or("");
            if event["type"] == "m.room.message"
                && sender.starts_with("@_echo_crowd")
                && body.contains(&format!(" {verb} "))
            {
                *counts
                    .entry((sender.to_owned(), body.to_owned()))
                    .or_default() += 1;
            }
        }
        if counts.len() == USERS * MESSAGES_EACH || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_arrived = start.elapsed();
    let mut missing = Vec::new();
    for i in 0..USERS {
        for m in 0..MESSAGES_EACH {
            let key = (
                format!("@_echo_crowd{i:02}:localhost"),
                format!("crowd{i:02} {verb} {m}"),
            );
            match counts.get(&key) {
                Some(1) => {}
                Some(n) => panic!("{key:?} echoed {n} times"),
                None => missing.push(key),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} echoes never arrived: {missing:?}",
        missing.len(),
        USERS * MESSAGES_EACH
    );
    (senders_done, all_arrived)
}

/// Every event of the room, following `/messages` pagination back to the start.
async fn whole_timeline(user: &crate::harness::User, room: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut from = String::new();
    loop {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000{from}",
            q(room)
        );
        let (status, body) = user.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
        let end = body["end"].as_str().map(str::to_owned);
        let done = chunk.is_empty() || end.is_none();
        events.extend(chunk);
        match end {
            Some(end) if !done => from = format!("&from={}", q(&end)),
            _ => return events,
        }
    }
}
