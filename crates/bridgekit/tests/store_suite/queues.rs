//! The framework's queues: transaction record, inbox, outbox; the boot counter; concurrency and locking.

use super::*;

pub(crate) fn item(queue: &str, n: u32) -> InboxItem {
    InboxItem {
        kind: ItemKind::Timeline,
        queue: queue.into(),
        json: format!(r#"{{"n":{n}}}"#),
    }
}

pub(crate) fn txn(key: &str, items: Vec<InboxItem>) -> IncomingTransaction {
    IncomingTransaction {
        key: key.as_bytes().to_vec(),
        items,
    }
}

pub(crate) async fn transactions_are_recorded_once_and_the_inbox_survives_reopen(mut s: Subject) {
    let store = s.store().await;
    let out = store
        .record_transactions(&[
            txn("t1", vec![item("!a", 1), item("!b", 2)]),
            txn("t1", vec![item("!a", 1), item("!b", 2)]),
            txn("t2", vec![item("!a", 3)]),
        ])
        .await
        .unwrap();
    let Recorded::New(first) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(out[1], Recorded::Duplicate, "a repeat within one batch");
    assert!(matches!(out[2], Recorded::New(_)));
    assert!(first[0] < first[1], "sequence follows the order of events");

    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store
            .record_transactions(&[txn("t2", vec![item("!a", 3)])])
            .await
            .unwrap(),
        [Recorded::Duplicate],
        "a retry after a restart"
    );
    let pending = store.pending_items().await.unwrap();
    let bodies: Vec<_> = pending.iter().map(|(_, i)| i.json.as_str()).collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    store.complete_item(pending[0].0).await.unwrap();
    assert_eq!(store.stats().await.unwrap().inbox_depth, 2);

    // Pruning keeps the newest records: t2 stays a duplicate, t1 is forgotten.
    assert_eq!(store.prune_transaction_records(1).await.unwrap(), 1);
    assert_eq!(
        store
            .record_transactions(&[txn("t2", vec![])])
            .await
            .unwrap(),
        [Recorded::Duplicate]
    );
    assert!(matches!(
        store
            .record_transactions(&[txn("t1", vec![])])
            .await
            .unwrap()[0],
        Recorded::New(_)
    ));
}

pub(crate) async fn handled_items_stay_handled_across_reopen(mut s: Subject) {
    let store = s.store().await;
    let items: Vec<InboxItem> = (0..10)
        .map(|n| item(if n % 2 == 0 { "!a" } else { "!b" }, n))
        .collect();
    let big = store
        .record_transactions(&[txn("big", items)])
        .await
        .unwrap();
    let Recorded::New(seqs) = &big[0] else {
        panic!("{big:?}")
    };
    let small = store
        .record_transactions(&[txn("small", vec![item("!c", 10), item("!c", 11)])])
        .await
        .unwrap();
    let Recorded::New(small) = &small[0] else {
        panic!("{small:?}")
    };
    // Handled out of order across rooms, as the dispatcher does; one twice.
    for &i in &[1usize, 0, 4, 7, 4] {
        store.complete_item(seqs[i]).await.unwrap();
    }
    for &seq in small {
        store.complete_item(seq).await.unwrap();
    }
    assert_eq!(store.stats().await.unwrap().inbox_depth, 6);

    drop(store);
    let store = s.reopen().await;
    let pending = store.pending_items().await.unwrap();
    let bodies: Vec<_> = pending.iter().map(|(_, i)| i.json.as_str()).collect();
    assert_eq!(
        bodies,
        [2, 3, 5, 6, 8, 9].map(|n| format!(r#"{{"n":{n}}}"#)),
        "exactly the unhandled items, in order; a finished transaction leaves nothing"
    );
    assert_eq!(store.stats().await.unwrap().inbox_depth, 6);
    for (seq, _) in &pending {
        store.complete_item(*seq).await.unwrap();
    }
    assert_eq!(store.stats().await.unwrap().inbox_depth, 0);
    drop(store);
    let store = s.reopen().await;
    assert!(store.pending_items().await.unwrap().is_empty());
    assert_eq!(store.stats().await.unwrap().inbox_depth, 0);
}

pub(crate) fn outgoing(n: u32) -> OutboxEntry {
    OutboxEntry {
        room_id: room(),
        sender: ghost("g"),
        txn_id: format!("t{n}").into(),
        op: OutboxOp::Message {
            event_type: "m.room.message".into(),
            content: RawValue::from_string(format!(r#"{{"body":"{n}"}}"#)).unwrap(),
        },
        timestamp: None,
        remote_id: Some(bridgekit::MessageId::new(format!("r{n}")).unwrap()),
        // A double puppet's send names the ghost that stands in if it is refused.
        fallback: n.is_multiple_of(2).then(|| ghost("stand-in")),
    }
}

pub(crate) async fn outbox_survives_reopen_and_completion_stores_the_mapping(mut s: Subject) {
    let store = s.store().await;
    let one = store.outbox_push(&outgoing(1)).await.unwrap();
    let two = store.outbox_push(&outgoing(2)).await.unwrap();
    store.outbox_push(&outgoing(3)).await.unwrap();
    assert!(one < two);
    drop(store);
    let store = s.reopen().await;
    let pending = store.outbox_pending().await.unwrap();
    let txns: Vec<String> = pending.iter().map(|(_, e)| e.txn_id.to_string()).collect();
    assert_eq!(txns, ["t1", "t2", "t3"]);
    let OutboxOp::Message { content, .. } = &pending[1].1.op else {
        panic!()
    };
    assert_eq!(
        content.get(),
        r#"{"body":"2"}"#,
        "content kept byte for byte"
    );
    let fallbacks: Vec<bool> = pending.iter().map(|(_, e)| e.fallback.is_some()).collect();
    assert_eq!(
        fallbacks,
        [false, true, false],
        "a double puppet's stand-in is kept"
    );

    let mapping = MessageMapping::new(room(), mid("r1"), ev("out1"));
    store.outbox_complete(one, Some(&mapping)).await.unwrap();
    assert_eq!(store.stats().await.unwrap().outbox_depth, 2);
    assert_eq!(
        store.message_by_event(&ev("out1")).await.unwrap(),
        Some(mapping)
    );
    // A mapping that conflicts still completes the send (it cannot be retried into shape).
    let clash = MessageMapping::new(room(), mid("r1"), ev("out2"));
    let err = store.outbox_complete(two, Some(&clash)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.stats().await.unwrap().outbox_depth, 1);
}

pub(crate) fn remote_item(n: u32) -> bridgekit::store::RemoteItem {
    bridgekit::store::RemoteItem {
        portal: bridgekit::PortalKey::new(cid(&format!("chat{}", n % 2))),
        event: RawValue::from_string(format!(r#"{{"message":{{"id":"m{n}"}}}}"#)).unwrap(),
    }
}

pub(crate) async fn the_remote_queue_survives_reopen_in_order(mut s: Subject) {
    let store = s.store().await;
    let mut seqs = Vec::new();
    for n in 1..=4 {
        seqs.push(store.remote_push(&remote_item(n)).await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    store.remote_complete(seqs[1]).await.unwrap();
    assert_eq!(store.stats().await.unwrap().remote_depth, 3);
    drop(store);
    let store = s.reopen().await;
    let pending = store.remote_pending().await.unwrap();
    let events: Vec<&str> = pending.iter().map(|(_, i)| i.event.get()).collect();
    assert_eq!(
        events,
        [
            r#"{"message":{"id":"m1"}}"#,
            r#"{"message":{"id":"m3"}}"#,
            r#"{"message":{"id":"m4"}}"#
        ],
        "oldest first, byte for byte"
    );
    assert_eq!(pending[1].1.portal, bridgekit::PortalKey::new(cid("chat1")));
    for (seq, _) in pending {
        store.remote_complete(seq).await.unwrap();
    }
    assert_eq!(store.stats().await.unwrap().remote_depth, 0);
}

pub(crate) async fn the_boot_counter_grows_across_reopen(mut s: Subject) {
    let a = s.store().await.next_boot().await.unwrap();
    let b = s.reopen().await.next_boot().await.unwrap();
    assert_eq!(b, a + 1);
}

pub(crate) async fn concurrent_repeats_of_a_mapping_all_succeed_and_keep_every_column(
    mut s: Subject,
) {
    let store = s.store().await;
    // Four tasks store the same 50 mappings at once (half with a sender and a time): a
    // repeat is never a conflict, even when it meets its twin in one group write.
    let mapping = |n: u64| {
        let m = MessageMapping::new(room(), mid(&format!("m{n}")), ev(format!("m{n}")));
        if n.is_multiple_of(2) {
            m.with_sender(ghost(&format!("g{n}")))
                .with_timestamp(ts(1_000 + n))
        } else {
            m
        }
    };
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let inserts = (0..50).map(|n| {
                    let store = store.clone();
                    async move { store.insert_message(&mapping(n)).await }
                });
                futures_util::future::join_all(inserts).await
            })
        })
        .collect();
    for writer in writers {
        for result in writer.await.unwrap() {
            result.unwrap();
        }
    }
    drop(store);
    let store = s.reopen().await;
    for n in 0..50 {
        assert_eq!(
            store.message_by_event(&ev(format!("m{n}"))).await.unwrap(),
            Some(mapping(n))
        );
    }
}

pub(crate) async fn concurrent_writers_never_split_a_mapping(mut s: Subject) {
    let store = s.store().await;
    // 8 writers race for the same 50 remote IDs, each with its own event IDs.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut won = 0;
                for n in 0..50 {
                    let m =
                        MessageMapping::new(room(), mid(&format!("r{n}")), ev(format!("{w}_{n}")));
                    match store.insert_message(&m).await {
                        Ok(()) => won += 1,
                        Err(StoreError::Conflict(_)) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 50, "each remote ID is won exactly once");
    for n in 0..50 {
        let m = store
            .message_by_remote(&room(), &mid(&format!("r{n}")), &pid(""))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.message_by_event(&m.event_id).await.unwrap(), Some(m));
    }
    // Read-modify-write of one ghost from many tasks loses no update.
    let counters: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update_ghost(&ghost("counter"), &|g| {
                        let n = g.metadata.as_u64().unwrap_or(0);
                        g.metadata = (n + 1).into();
                    })
                    .await
                    .unwrap();
            })
        })
        .collect();
    for c in counters {
        c.await.unwrap();
    }
    assert_eq!(store.ghost(&ghost("counter")).await.unwrap().metadata, 16);
}

pub(crate) async fn a_second_open_is_refused_while_the_first_holds_the_store(mut s: Subject) {
    let _first = s.store().await;
    let err = (s.open)().await.unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}
