//! Store hot paths on both backends: mapping insert and lookup (by remote ID and by event
//! ID) in a store that already holds 100,000 mappings, and a durable 50-event transaction
//! record. PostgreSQL runs in a throwaway cluster with fsync on.
//!
//! `cargo bench -p bridgekit --bench store`

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridgekit::ruma::{OwnedEventId, OwnedRoomId};
use bridgekit::store::postgres::PostgresStore;
use bridgekit::store::queues::{InboxItem, IncomingTransaction, ItemKind};
use bridgekit::store::{Backend, MessageMapping, Record, SledStore};
use criterion::{Criterion, criterion_group, criterion_main};

const PREFILLED: u64 = 100_000;
const ROOMS: u64 = 100;

fn room(n: u64) -> OwnedRoomId {
    format!("!room{}:example.org", n % ROOMS)
        .try_into()
        .unwrap()
}

fn event(tag: &str, n: u64) -> OwnedEventId {
    format!("${tag}{n}").try_into().unwrap()
}

fn mapping(tag: &str, n: u64) -> MessageMapping {
    MessageMapping::new(
        room(n),
        bridgekit::MessageId::new(format!("{tag}-{n}")).unwrap(),
        event(tag, n),
    )
}

/// A cheap, repeatable spread of lookups over the prefilled keys.
fn pick(i: u64) -> u64 {
    i.wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        % PREFILLED
}

async fn prefill(store: &dyn Backend) {
    for chunk in (0..PREFILLED).collect::<Vec<_>>().chunks(1000) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|n| Record::Message(mapping("pre", *n)))
            .collect();
        store.import(&records).await.unwrap();
    }
    store.flush().await.unwrap();
}

fn transaction(n: u64) -> IncomingTransaction {
    IncomingTransaction {
        key: format!("txn{n}").into_bytes(),
        items: (0..50)
            .map(|i| InboxItem {
                kind: ItemKind::Timeline,
                queue: room(i).to_string(),
                json: format!(r#"{{"event_id":"$t{n}_{i}","type":"m.room.message","content":{{"body":"hello"}}}}"#),
            })
            .collect(),
    }
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    store: Arc<dyn Backend>,
    rt: &tokio::runtime::Runtime,
) {
    let empty = rt.block_on(store.stats()).unwrap().bytes.unwrap_or(0);
    rt.block_on(prefill(&*store));
    let full = rt.block_on(store.stats()).unwrap().bytes.unwrap_or(0);
    eprintln!(
        "{name}: {PREFILLED} mappings take {} bytes on disk, {} bytes per mapping",
        full.saturating_sub(empty),
        full.saturating_sub(empty) / PREFILLED
    );
    let mut group = c.benchmark_group(format!("store/{name}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    let mut next = 0u64;
    group.bench_function("insert_message", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store.insert_message(&mapping("new", next)).await.unwrap();
                    next += 1;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("message_by_remote", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let n = pick(i);
                    let found = store
                        .message_by_remote(
                            &room(n),
                            &bridgekit::MessageId::new(format!("pre-{n}")).unwrap(),
                            &bridgekit::PartId::only(),
                        )
                        .await
                        .unwrap();
                    assert!(found.is_some());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("message_by_event", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let found = store
                        .message_by_event(&event("pre", pick(i)))
                        .await
                        .unwrap();
                    assert!(found.is_some());
                }
                start.elapsed()
            })
        })
    });
    let mut txn = 0u64;
    group.bench_function("record_transaction_50_events_durable", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let batch: Vec<_> = (0..iters).map(|i| transaction(txn + i)).collect();
                txn += iters;
                let start = Instant::now();
                for t in &batch {
                    store
                        .record_transactions(std::slice::from_ref(t))
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    if let Ok(stats) = rt.block_on(store.stats()) {
        eprintln!("{name}: {:?} bytes after the run", stats.bytes);
    }
}

fn store_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Backend> = Arc::new(SledStore::open(dir.path(), 16 << 20).unwrap());
    bench_backend(c, "sled", sled, &rt);
    let url = postgres::cluster().url.clone();
    let pg: Arc<dyn Backend> = Arc::new(
        rt.block_on(PostgresStore::open(&url, &postgres::fresh_schema("bench")))
            .unwrap(),
    );
    bench_backend(c, "postgres", pg, &rt);
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
