//! The framework's hot path, piece by piece: parsing a 50-event transaction, parsing and
//! durably recording it (with the dedupe check) in a sled store, recognising a retry,
//! handing 1,000 events to per-room queues, and building a send request.
//!
//! `cargo bench -p bridgekit --bench hot_path`

use std::time::{Duration, Instant};

use bridgekit::client::Endpoint;
use bridgekit::internals::{CountingDispatcher, parse_transaction};
use bridgekit::ruma::api::client::message::send_message_event;
use bridgekit::ruma::api::{MatrixVersion, SupportedVersions};
use bridgekit::ruma::serde::Raw;
use bridgekit::ruma::{OwnedRoomId, OwnedUserId};
use bridgekit::store::{Queues, Recorded, SledStore};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const EVENTS: usize = 50;

/// A transaction body like Synapse's: `EVENTS` text messages over 10 rooms.
fn body(n: usize) -> Vec<u8> {
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            json!({
                "type": "m.room.message",
                "room_id": format!("!room{}:example.org", i % 10),
                "sender": format!("@user{}:example.org", i % 7),
                "event_id": format!("$ev{n}-{i}"),
                "origin_server_ts": 1_700_000_000_000u64 + i as u64,
                "content": {"msgtype": "m.text", "body": format!("message {i} of transaction {n}: some ordinary text")},
                "unsigned": {"age": 12}
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "events": events })).unwrap()
}

fn parse(c: &mut Criterion) {
    let body = body(0);
    c.bench_function("parse a 50-event transaction", |b| {
        b.iter(|| parse_transaction("t0", std::hint::black_box(&body)).unwrap())
    });
}

fn record(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), bridgekit::store::DEFAULT_CACHE_BYTES).unwrap();
    let bodies: Vec<Vec<u8>> = (0..64).map(body).collect();
    let mut next = 0usize;
    c.bench_function("parse + dedupe + durable record, 50 events (sled)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let txn_id = format!("t{next}");
                    let txn = parse_transaction(&txn_id, &bodies[next % bodies.len()]).unwrap();
                    let outcome = store.record_transactions(&[txn]).await.unwrap();
                    assert!(matches!(outcome[0], Recorded::New(_)));
                    next += 1;
                }
                started.elapsed()
            })
        })
    });
    c.bench_function("recognise a retried transaction (sled)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for i in 0..iters {
                    let txn_id = format!("t{}", i as usize % next.max(1));
                    let txn = parse_transaction(
                        &txn_id,
                        &bodies[i as usize % next.max(1) % bodies.len()],
                    )
                    .unwrap();
                    let outcome = store.record_transactions(&[txn]).await.unwrap();
                    assert_eq!(outcome[0], Recorded::Duplicate);
                }
                started.elapsed()
            })
        })
    });
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..100).map(|r| format!("!room{r}:example.org")).collect();
    let dispatcher = rt.block_on(async { CountingDispatcher::new() });
    c.bench_function("dispatch 1,000 events over 100 room queues", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    dispatcher.run(&keys, 1000).await;
                }
                started.elapsed()
            })
        })
    });
}

fn build_send(c: &mut Criterion) {
    let versions = SupportedVersions {
        versions: [MatrixVersion::V1_11].into(),
        features: Default::default(),
    };
    let room: OwnedRoomId = "!room1:example.org".try_into().unwrap();
    let user: OwnedUserId = "@_echo_alice:example.org".try_into().unwrap();
    let content = serde_json::value::to_raw_value(
        &json!({"msgtype": "m.text", "body": "an echo of an ordinary message"}),
    )
    .unwrap();
    c.bench_function("build a send request as a ghost", |b| {
        b.iter(|| {
            let request = send_message_event::v3::Request::new_raw(
                room.clone(),
                "bk1-42".into(),
                "m.room.message".into(),
                Raw::from_json(content.clone()),
            );
            request
                .build("http://127.0.0.1:8008", "as-token", Some(&user), &versions)
                .unwrap()
        })
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = parse, record, dispatch, build_send
}
criterion_main!(hot_path);
