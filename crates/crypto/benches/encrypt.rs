//! What encryption costs per message inside the machine: sealing a message for a room (the
//! outbox's share of an encrypted echo) and opening one (the inbox's), with the state saved to
//! an in-memory store (the bridge's store adds its own write per seal).
//!
//! `cargo bench -p bridgekit-crypto --bench encrypt`

use std::sync::Arc;

use bridgekit_crypto::{Machine, MachineConfig};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../tests/common/mod.rs"]
mod common;

const ROOM: &str = "!room:example.org";
const SETTINGS: &str = r#"{"algorithm":"m.megolm.v1.aes-sha2"}"#;
const CONTENT: &str =
    r#"{"msgtype":"m.text","body":"hello from the bench, a message of ordinary length"}"#;

fn machine(rt: &tokio::runtime::Runtime) -> Machine {
    rt.block_on(Machine::open(
        MachineConfig::new("http://hs.invalid", "as", "@bot:example.org", "BOTDEV"),
        Arc::new(common::MemoryKv::default()),
        Arc::new(common::FakeHomeserver::default()),
    ))
    .unwrap()
}

fn encrypted_event(content: &str, n: usize) -> String {
    format!(
        r#"{{"type":"m.room.encrypted","content":{content},"event_id":"$e{n}","sender":"@bot:example.org","origin_server_ts":1,"room_id":"{ROOM}"}}"#
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let m = machine(&rt);
    c.bench_function("seal one message", |b| {
        b.iter(|| {
            rt.block_on(m.encrypt(ROOM, SETTINGS, &[], "m.room.message", CONTENT))
                .unwrap()
        })
    });
    let sealed: Vec<String> = (0..64)
        .map(|n| {
            let content = rt
                .block_on(m.encrypt(ROOM, SETTINGS, &[], "m.room.message", CONTENT))
                .unwrap();
            encrypted_event(&content, n)
        })
        .collect();
    let mut next = 0;
    c.bench_function("open one message", |b| {
        b.iter(|| {
            next = (next + 1) % sealed.len();
            rt.block_on(m.decrypt(ROOM, &sealed[next], std::time::Duration::ZERO))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
