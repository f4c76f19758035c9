//! Properties of the store's two hardest promises, over generated operation sequences:
//! deduplication records each transaction once whatever the batching, and message mappings
//! always agree with a simple model in both directions.

use std::collections::HashMap;

use bridgekit::ruma::{OwnedEventId, OwnedRoomId};
use bridgekit::store::queues::{InboxItem, IncomingTransaction, ItemKind, Recorded};
use bridgekit::store::{MessageMapping, Queues, SledStore, Store, StoreError};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn txn(key: u8, items: u8) -> IncomingTransaction {
    IncomingTransaction {
        key: vec![key],
        items: (0..items)
            .map(|i| InboxItem {
                kind: ItemKind::Timeline,
                queue: format!("!r{}", i % 3),
                json: format!("{{\"txn\":{key},\"i\":{i}}}"),
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Transactions (keys from a small set, so retries are common) recorded in batches of
    /// any size: the first of each key is new, every later one a duplicate, and the inbox
    /// holds exactly the first ones' items in order, also after a reopen.
    #[test]
    fn each_transaction_is_recorded_once_whatever_the_batching(
        txns in prop::collection::vec((0u8..6, 0u8..4), 1..30),
        cuts in prop::collection::vec(1usize..6, 1..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let store = SledStore::open(dir.path(), 1 << 20).unwrap();
            let all: Vec<IncomingTransaction> = txns.iter().map(|(k, n)| txn(*k, *n)).collect();
            let mut outcomes = Vec::new();
            let (mut at, mut cut) = (0, cuts.iter().cycle());
            while at < all.len() {
                let end = (at + cut.next().unwrap()).min(all.len());
                outcomes.extend(store.record_transactions(&all[at..end]).await.unwrap());
                at = end;
            }
            let mut seen = std::collections::HashSet::new();
            let mut expected_items = Vec::new();
            for (t, outcome) in all.iter().zip(&outcomes) {
                if seen.insert(t.key.clone()) {
                    prop_assert!(matches!(outcome, Recorded::New(seqs) if seqs.len() == t.items.len()));
                    expected_items.extend(t.items.iter().map(|i| i.json.clone()));
                } else {
                    prop_assert_eq!(outcome, &Recorded::Duplicate);
                }
            }
            drop(store);
            let store = SledStore::open(dir.path(), 1 << 20).unwrap();
            let pending: Vec<String> = store.pending_items().await.unwrap().into_iter().map(|(_, i)| i.json).collect();
            prop_assert_eq!(pending, expected_items);
            Ok(())
        })?;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        room: u8,
        remote: u8,
        part: u8,
        event: u8,
    },
    Delete {
        event: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..2, 0u8..5, 0u8..2, 0u8..8).prop_map(|(room, remote, part, event)| Op::Insert { room, remote, part, event }),
        1 => (0u8..8).prop_map(|event| Op::Delete { event }),
    ]
}

fn room(n: u8) -> OwnedRoomId {
    format!("!room{n}:example.org").try_into().unwrap()
}

fn event(n: u8) -> OwnedEventId {
    format!("$event{n}").try_into().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of inserts and deletes: the store accepts exactly what a two-map model
    /// accepts, and afterwards every mapping resolves the same both ways as in the model.
    #[test]
    fn mappings_agree_with_the_model_in_both_directions(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let store = SledStore::open(dir.path(), 1 << 20).unwrap();
            // (room, remote, part) → event, and event → (room, remote, part)
            let mut by_remote: HashMap<(u8, u8, u8), u8> = HashMap::new();
            let mut by_event: HashMap<u8, (u8, u8, u8)> = HashMap::new();
            for op in &ops {
                match *op {
                    Op::Insert { room: r, remote, part, event: e } => {
                        let mapping = MessageMapping::new(room(r), bridgekit::MessageId::new(remote.to_string()).unwrap(), event(e)).with_part(bridgekit::PartId::new(part.to_string()).unwrap());
                        let key = (r, remote, part);
                        let allowed = match (by_remote.get(&key), by_event.get(&e)) {
                            (None, None) => true,
                            (Some(existing), Some(k)) => *existing == e && *k == key,
                            _ => false,
                        };
                        let result = store.insert_message(&mapping).await;
                        if allowed {
                            prop_assert!(result.is_ok(), "{:?} refused: {:?}", op, result);
                            by_remote.insert(key, e);
                            by_event.insert(e, key);
                        } else {
                            prop_assert!(matches!(result, Err(StoreError::Conflict(_))), "{:?} accepted", op);
                        }
                    }
                    Op::Delete { event: e } => {
                        let removed = store.delete_message(&event(e)).await.unwrap();
                        match by_event.remove(&e) {
                            Some(key) => {
                                by_remote.remove(&key);
                                prop_assert_eq!(removed.map(|m| m.event_id), Some(event(e)));
                            }
                            None => prop_assert!(removed.is_none()),
                        }
                    }
                }
            }
            for r in 0..2 {
                for remote in 0..5 {
                    for part in 0..2 {
                        let found = store.message_by_remote(&room(r), &bridgekit::MessageId::new(remote.to_string()).unwrap(), &bridgekit::PartId::new(part.to_string()).unwrap()).await.unwrap();
                        prop_assert_eq!(found.map(|m| m.event_id), by_remote.get(&(r, remote, part)).map(|e| event(*e)));
                    }
                }
            }
            for e in 0..8 {
                let found = store.message_by_event(&event(e)).await.unwrap();
                let expected = by_event.get(&e).map(|(r, remote, part)| (room(*r), remote.to_string(), part.to_string()));
                prop_assert_eq!(found.map(|m| (m.room_id, m.remote_id.into_string(), m.part.into_string())), expected);
            }
            Ok(())
        })?;
    }
}

proptest! {
    /// Any remote ID makes a valid ghost localpart, and the escape is reversible.
    #[test]
    fn ghost_localparts_round_trip(remote in ".*") {
        let escaped = bridgekit::ids::escape_localpart(&remote);
        prop_assert!(escaped.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/".contains(&b)), "{}", escaped);
        prop_assert_eq!(bridgekit::ids::unescape_localpart(&escaped), Some(remote));
    }
}
