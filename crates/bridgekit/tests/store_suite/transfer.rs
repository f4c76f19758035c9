//! Export and import between backends.

use super::*;

/// Fills a store with one of everything.
pub(crate) async fn fill(store: &dyn Backend) {
    store
        .insert_message(&MessageMapping::new(room(), mid("m1"), ev(1)).with_sender(ghost("a")))
        .await
        .unwrap();
    store
        .insert_reaction(&ReactionMapping::new(
            room(),
            mid("m1"),
            ghost("a"),
            "👍",
            ev(2),
        ))
        .await
        .unwrap();
    store
        .put_portal(&Portal::new(
            PortalKey::new(cid("#c")).with_receiver(lid("me")),
            room(),
        ))
        .await
        .unwrap();
    store
        .update_ghost(&ghost("a"), &|g| {
            g.registered = true;
            g.remote_id = Some(uid("a"));
        })
        .await
        .unwrap();
    store.set_joined(&ghost("a"), &room(), true).await.unwrap();
    store
        .set_room_profile(&ghost("a"), &room(), &(Some("A".into()), None))
        .await
        .unwrap();
    store.put_typed("ns", "k", &vec!["v"]).await.unwrap();
    let mut user = bridgekit::store::UserRecord::new(matrix_user("alice"));
    user.management_room = Some(room());
    store.put_user(&user).await.unwrap();
    store.put_login(&login("me", "alice")).await.unwrap();
    store
        .put_portal_login(
            &bridgekit::store::PortalLogin::new(
                PortalKey::new(cid("#c")).with_receiver(lid("me")),
                lid("me"),
                matrix_user("alice"),
            )
            .preferred(),
        )
        .await
        .unwrap();
    store
        .record_transactions(&[txn("t1", vec![item("!a", 1), item("!a", 2)])])
        .await
        .unwrap();
    store.outbox_push(&outgoing(1)).await.unwrap();
    store.outbox_push(&outgoing(2)).await.unwrap();
    store.remote_push(&remote_item(1)).await.unwrap();
    store.next_boot().await.unwrap();
}

pub(crate) fn lines(records: Vec<Record>) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    out.sort();
    out
}

pub(crate) async fn export_then_import_reproduces_every_record(mut s: Subject) {
    let store = s.store().await;
    assert!(store.is_empty().await.unwrap());
    fill(&*store).await;
    assert!(!store.is_empty().await.unwrap());
    let mut exported = Vec::new();
    store.export(&mut exported).await.unwrap();
    assert_eq!(exported.len(), 17, "{exported:#?}");

    // Into a fresh store of the other backend, and back again.
    let dir = tempfile::tempdir().unwrap();
    let other: Arc<dyn Backend> = if store.backend() == "sled" {
        Arc::new(
            PostgresStore::open(&cluster().url, &fresh_schema("copy"))
                .await
                .unwrap(),
        )
    } else {
        Arc::new(SledStore::open(dir.path(), 4 << 20).unwrap())
    };
    let report = bridgekit::store::export::migrate(&*store, &*other)
        .await
        .unwrap();
    assert_eq!(
        (
            report.messages,
            report.reactions,
            report.portals,
            report.ghosts,
            report.logins
        ),
        (1, 1, 1, 1, 1)
    );
    let mut copied = Vec::new();
    other.export(&mut copied).await.unwrap();
    assert_eq!(lines(copied), lines(exported));
    // The copy behaves, not only looks, the same.
    assert_eq!(
        other
            .record_transactions(&[txn("t1", vec![])])
            .await
            .unwrap(),
        [Recorded::Duplicate]
    );
    let remote = other.remote_pending().await.unwrap();
    assert_eq!(remote.len(), 1, "the remote queue carried over");
    let pending = other.outbox_pending().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].1.txn_id.as_str(), "t1");
    assert!(
        other.next_boot().await.unwrap() >= 2,
        "boot counter carried over"
    );
    // A store that holds records is not a migration target.
    assert!(matches!(
        bridgekit::store::export::migrate(&*store, &*other).await,
        Err(StoreError::TargetNotEmpty)
    ));
}
