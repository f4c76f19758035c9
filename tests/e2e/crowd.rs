//! A crowd of new ghosts at once: twenty Matrix users write into one room for the first time,
//! together, so twenty ghosts register, join and send at the same moment. Synapse may answer
//! a ghost's send with 403 "not in room" for a while after accepting its join
//! (docs/homeserver-behaviour.md); every echo must still arrive, exactly once.

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
    let writers = users.into_iter().enumerate().map(|(i, user)| {
        let room = room.clone();
        tokio::spawn(async move {
            for m in 0..MESSAGES_EACH {
                user.send_text(&room, &format!("crowd{i:02} says {m}"))
                    .await;
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counts: HashMap<(String, String), usize>;
    loop {
        counts = HashMap::new();
        for event in whole_timeline(&alice, &room).await {
            let sender = event["sender"].as_str().unwrap_or("");
            if event["type"] == "m.room.message" && sender.starts_with("@_echo_crowd") {
                let body = event["content"]["body"].as_str().unwrap_or("").to_owned();
                *counts.entry((sender.to_owned(), body)).or_default() += 1;
            }
        }
        if counts.len() == USERS * MESSAGES_EACH || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = std::fs::read_to_string(env.bridge_log()).unwrap_or_default();
    eprintln!(
        "sends refused as \"not in room\" and retried: {}",
        log.matches("does not see the user in the room yet").count()
    );
    let mut missing = Vec::new();
    for i in 0..USERS {
        for m in 0..MESSAGES_EACH {
            let key = (
                format!("@_echo_crowd{i:02}:localhost"),
                format!("crowd{i:02} says {m}"),
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
