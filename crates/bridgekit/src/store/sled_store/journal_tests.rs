//! The intake journal inside the store: what it brings back at open, and what it never
//! brings back twice.

use super::SledStore;
use super::inbox::encode_batch;
use super::journal::JournalRecord;
use crate::store::queues::{InboxItem, IncomingTransaction, ItemKind, Recorded};
use crate::store::{DEFAULT_CACHE_BYTES, Queues};

fn txn(name: &str, events: usize) -> IncomingTransaction {
    IncomingTransaction {
        key: name.as_bytes().to_vec(),
        items: (0..events)
            .map(|i| InboxItem {
                kind: ItemKind::Timeline,
                queue: "!room:hs".to_owned(),
                json: format!(r#"{{"n":"{name}-{i}"}}"#),
            })
            .collect(),
    }
}

/// What the journal holds when sled lost a transaction: written there only.
fn journal_only(store: &SledStore, txn: &IncomingTransaction) {
    let batch = store.db.generate_id().unwrap();
    let record = JournalRecord {
        record_seq: store.db.generate_id().unwrap(),
        key: txn.key.clone(),
        batches: vec![(batch, encode_batch(&txn.items))],
    };
    store.journal.lock().unwrap().append(&[record]).unwrap();
}

/// The journal file's length in the store at `dir`.
fn journal_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join(super::JOURNAL_FILE))
        .unwrap()
        .len()
}

/// The events' names, in the order they are handed over.
fn jsons(pending: Vec<(u64, InboxItem)>) -> Vec<String> {
    pending
        .into_iter()
        .map(|(_, item)| {
            let event: serde_json::Value = serde_json::from_str(&item.json).unwrap();
            event["n"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_transaction_sled_lost_comes_back_from_the_journal_once() {
    let dir = tempfile::tempdir().unwrap();
    let lost = txn("lost", 3);
    {
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        journal_only(&store, &lost);
        assert!(store.pending_items().await.unwrap().is_empty());
    }
    let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(
        jsons(store.pending_items().await.unwrap()),
        ["lost-0", "lost-1", "lost-2"]
    );
    // The homeserver's retry of it is a duplicate now, and the journal was emptied.
    let outcomes = store.record_transactions(&[txn("lost", 3)]).await.unwrap();
    assert_eq!(outcomes, [Recorded::Duplicate]);
    assert_eq!(journal_len(dir.path()), 0);
    drop(store);
    let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.pending_items().await.unwrap().len(), 3, "not doubled");
}

#[tokio::test]
async fn journaled_transactions_are_handed_over_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
        let outcomes = store
            .record_transactions(&[txn("a", 2), txn("b", 1), txn("a", 2)])
            .await
            .unwrap();
        assert!(matches!(
            outcomes[..],
            [Recorded::New(_), Recorded::New(_), Recorded::Duplicate]
        ));
        // In the journal and in sled (flushed or not): dropped without a flush.
        assert!(journal_len(dir.path()) > 0);
    }
    let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(
        jsons(store.pending_items().await.unwrap()),
        ["a-0", "a-1", "b-0"]
    );
}

#[tokio::test]
async fn pruning_empties_the_journal_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    for n in 0..5 {
        store
            .record_transactions(&[txn(&format!("t{n}"), 1)])
            .await
            .unwrap();
    }
    assert_eq!(store.prune_transaction_records(2).await.unwrap(), 3);
    assert_eq!(journal_len(dir.path()), 0);
    drop(store);
    // Nothing pruned comes back as new: t0..t2 are forgotten, t3 and t4 still recorded.
    let store = SledStore::open(dir.path(), DEFAULT_CACHE_BYTES).unwrap();
    assert_eq!(store.pending_items().await.unwrap().len(), 5);
    let outcomes = store.record_transactions(&[txn("t4", 1)]).await.unwrap();
    assert_eq!(outcomes, [Recorded::Duplicate]);
}
