//! A crowd of new ghosts at once: twenty Matrix users write into one room for the first time,
//! together, so twenty ghosts register, join and send at the same moment. Synapse may answer
//! a ghost's send with 403 "not in room" for a while after accepting its join
//! (docs/homeserver-behaviour.md); every echo must still arrive, exactly once. Then they all
//! write again, to ghosts already joined (a busy room), first with the default strict
//! per-room order (every user's echoes in the order they wrote), then with 32 sends in
//! flight per room (`bridge.sends_in_flight_per_room: 32`), which overlaps messages of
//! different writers only; the test prints how long each wave took to be echoed and checks
//! that no echo came out of its writer's order in any wave. Last, twenty new users write at
//! once with those 32 in flight: new ghosts racing their own joins.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::harness::{Env, SERIAL, q};

const USERS: usize = 20;
const MESSAGES_EACH: usize = 10;
/// `bridge.sends_in_flight_per_room` for the last wave: with fewer, Synapse's per-send
/// latency (which grows with the load) still paces the room.
const IN_FLIGHT: &str = "32";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cold_ghosts_at_once_echo_every_message_exactly_once() {
    crate::init();
    let _serial = SERIAL.lock().await;
    let mut env = Env::start().await;
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
    let users = join_users(&env, "crowd", &room).await;

    // Everyone writes at once: each user's ten messages go out back to back, all users
    // concurrently, so the first message of each user meets a ghost that does not exist yet.
    let cold = wave(&alice, &users, "crowd", &room, "says").await;
    let log = std::fs::read_to_string(env.bridge_log()).unwrap_or_default();
    eprintln!(
        "sends refused as \"not in room\" and retried: {}",
        log.matches("does not see the user in the room yet").count()
    );
    // Again, with every ghost registered and joined: a busy room as it usually is.
    let warm = wave(&alice, &users, "crowd", &room, "adds").await;
    assert_eq!(
        (cold.2, warm.2),
        (0, 0),
        "strict per-room order: every echo in its writer's order"
    );
    // And with the operator's trade: many plain messages of the room in flight at once.
    env.terminate_bridge();
    env.start_bridge_with(&[("BRIDGEKIT_BRIDGE_SENDS_IN_FLIGHT_PER_ROOM", IN_FLIGHT)])
        .await;
    let wide = wave(&alice, &users, "crowd", &room, "then").await;
    // Twenty more users write for the first time with as many sends in flight: ghosts
    // register and join concurrently, a ghost's messages may race its own join.
    let newcomers = join_users(&env, "fresh", &room).await;
    let fresh = wave(&alice, &newcomers, "fresh", &room, "says").await;
    let log = std::fs::read_to_string(env.bridge_log()).unwrap_or_default();
    eprintln!(
        "sends refused as \"not in room\" and retried, all waves: {}",
        log.matches("does not see the user in the room yet").count()
    );
    assert_eq!(
        (wide.2, fresh.2),
        (0, 0),
        "sends in flight overlap across writers only: every echo in its writer's order"
    );
    eprintln!(
        "busy room, {USERS} users x {MESSAGES_EACH} messages at once on Synapse (senders done / every echo in the room, after the first send; echoes out of their writer's order): \
         cold ghosts {:.1} s / {:.1} s / {}; warm ghosts {:.1} s / {:.1} s / {}; warm, {IN_FLIGHT} sends in flight per room {:.1} s / {:.1} s / {}; cold, {IN_FLIGHT} in flight {:.1} s / {:.1} s / {}",
        cold.0.as_secs_f64(),
        cold.1.as_secs_f64(),
        cold.2,
        warm.0.as_secs_f64(),
        warm.1.as_secs_f64(),
        warm.2,
        wide.0.as_secs_f64(),
        wide.1.as_secs_f64(),
        wide.2,
        fresh.0.as_secs_f64(),
        fresh.1.as_secs_f64(),
        fresh.2,
    );
}

/// Registers `name00`…`name19` and joins them to `room`.
async fn join_users(env: &Env, name: &str, room: &str) -> Vec<crate::harness::User> {
    let mut users = Vec::new();
    for i in 0..USERS {
        let user = env.user(&format!("{name}{i:02}")).await;
        let path = format!("/_matrix/client/v3/join/{}", q(room));
        let (status, body) = user.call(Method::POST, &path, Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
        users.push(user);
    }
    users
}

/// Every user writes ten messages (`<name>NN <verb> M`) back to back, all users at once; checks
/// that each is echoed exactly once. Returns how long after the first send the senders were
/// done and every echo was in the room, and how many echoes came before an echo of an
/// earlier message by the same writer.
async fn wave(
    reader: &crate::harness::User,
    users: &[crate::harness::User],
    name: &str,
    room: &str,
    verb: &str,
) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let writers = users.iter().enumerate().map(|(i, user)| {
        let (user, room, verb, name) = (
            user.clone(),
            room.to_owned(),
            verb.to_owned(),
            name.to_owned(),
        );
        tokio::spawn(async move {
            for m in 0..MESSAGES_EACH {
                user.send_text(&room, &format!("{name}{i:02} {verb} {m}"))
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
    let mut timeline;
    loop {
        counts = HashMap::new();
        timeline = whole_timeline(reader, room).await;
        for event in &timeline {
            let sender = event["sender"].as_str().unwrap_or("");
            let body = event["content"]["body"].as_str().unwrap_or("");
            if event["type"] == "m.room.message"
                && sender.starts_with(&format!("@_echo_{name}"))
                && body.contains(&format!(" {verb} "))
            {
                *counts
                    .entry((sender.to_owned(), body.to_owned()))
                    .or_default() += 1;
            }
        }
        if counts.len() == users.len() * MESSAGES_EACH || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_arrived = start.elapsed();
    let mut missing = Vec::new();
    for i in 0..users.len() {
        for m in 0..MESSAGES_EACH {
            let key = (
                format!("@_echo_{name}{i:02}:localhost"),
                format!("{name}{i:02} {verb} {m}"),
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
        users.len() * MESSAGES_EACH
    );
    (senders_done, all_arrived, out_of_order(&timeline, verb))
}

/// Echoes (of this wave) that appear after an echo of a later message by the same writer.
fn out_of_order(newest_first: &[serde_json::Value], verb: &str) -> usize {
    let mut last_seen: HashMap<&str, usize> = HashMap::new();
    let mut late = 0;
    for event in newest_first.iter().rev() {
        let sender = event["sender"].as_str().unwrap_or("");
        let body = event["content"]["body"].as_str().unwrap_or("");
        let Some(m) = body
            .strip_prefix(
                sender
                    .trim_start_matches("@_echo_")
                    .split(':')
                    .next()
                    .unwrap_or(""),
            )
            .and_then(|rest| rest.strip_prefix(&format!(" {verb} ")))
            .and_then(|m| m.parse::<usize>().ok())
        else {
            continue;
        };
        let last = last_seen.entry(sender).or_insert(m);
        if m < *last {
            late += 1;
        } else {
            *last = m;
        }
    }
    late
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
