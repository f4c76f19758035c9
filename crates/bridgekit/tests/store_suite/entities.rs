//! Mappings, reactions, portals, ghosts and the bridge's own values.

use super::*;

pub(crate) async fn message_mappings_resolve_both_ways_and_survive_reopen(mut s: Subject) {
    let store = s.store().await;
    let caption = MessageMapping::new(room(), mid("m1"), ev(1))
        .with_sender(ghost("alice"))
        .with_timestamp(ts(1_700_000_000_000));
    let image = MessageMapping::new(room(), mid("m1"), ev(2)).with_part(pid("image"));
    let tenth = MessageMapping::new(room(), mid("m1"), ev(3)).with_part(pid("10"));
    for m in [&caption, &image, &tenth] {
        store.insert_message(m).await.unwrap();
    }
    store.insert_message(&caption).await.unwrap(); // the same mapping again is a no-op

    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store
            .message_by_remote(&room(), &mid("m1"), &pid(""))
            .await
            .unwrap(),
        Some(caption.clone())
    );
    assert_eq!(
        store.message_by_event(&ev(2)).await.unwrap(),
        Some(image.clone())
    );
    let parts = store.message_parts(&room(), &mid("m1")).await.unwrap();
    assert_eq!(
        parts,
        [caption.clone(), tenth, image.clone()],
        "ordered by part"
    );
    assert_eq!(
        store
            .message_by_remote(&room(), &mid("m2"), &pid(""))
            .await
            .unwrap(),
        None
    );
    let other_room = owned_room_id!("!other:example.org");
    assert_eq!(
        store
            .message_by_remote(&other_room, &mid("m1"), &pid(""))
            .await
            .unwrap(),
        None,
        "remote IDs are scoped to their room"
    );

    assert_eq!(store.delete_message(&ev(2)).await.unwrap(), Some(image));
    assert_eq!(
        store
            .message_by_remote(&room(), &mid("m1"), &pid("image"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.message_by_event(&ev(2)).await.unwrap(), None);
    assert_eq!(store.delete_message(&ev(2)).await.unwrap(), None);
    // Once deleted, the remote part can be mapped again.
    let again = MessageMapping::new(room(), mid("m1"), ev(4)).with_part(pid("image"));
    store.insert_message(&again).await.unwrap();
    assert_eq!(
        store
            .message_parts(&room(), &mid("m1"))
            .await
            .unwrap()
            .len(),
        3
    );
}

pub(crate) async fn conflicting_message_mappings_change_nothing(mut s: Subject) {
    let store = s.store().await;
    let first = MessageMapping::new(room(), mid("r1"), ev("a"));
    store.insert_message(&first).await.unwrap();
    let same_remote = MessageMapping::new(room(), mid("r1"), ev("b"));
    let same_event = MessageMapping::new(room(), mid("r2"), ev("a"));
    let same_but_sender = first.clone().with_sender(ghost("x"));
    for bad in [&same_remote, &same_event, &same_but_sender] {
        let err = store.insert_message(bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
    assert_eq!(
        store
            .message_by_remote(&room(), &mid("r2"), &pid(""))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.message_by_event(&ev("b")).await.unwrap(), None);
    assert_eq!(
        store
            .message_by_remote(&room(), &mid("r1"), &pid(""))
            .await
            .unwrap(),
        Some(first)
    );
}

pub(crate) async fn reactions_are_keyed_by_target_sender_and_key(mut s: Subject) {
    let store = s.store().await;
    let thumbs = ReactionMapping::new(room(), mid("m1"), ghost("bob"), "👍", ev("r1"))
        .with_remote_id(mid("x1"));
    let heart = ReactionMapping::new(room(), mid("m1"), ghost("bob"), "❤️", ev("r2"));
    store.insert_reaction(&thumbs).await.unwrap();
    store.insert_reaction(&heart).await.unwrap();
    store.insert_reaction(&thumbs).await.unwrap();
    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store
            .reaction(&room(), &mid("m1"), &ghost("bob"), "👍")
            .await
            .unwrap(),
        Some(thumbs.clone())
    );
    assert_eq!(
        store
            .reaction(&room(), &mid("m1"), &ghost("carol"), "👍")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.reaction_by_event(&ev("r2")).await.unwrap(),
        Some(heart)
    );
    // The same reaction key by the same sender on the same message is one reaction.
    let duplicate = ReactionMapping::new(room(), mid("m1"), ghost("bob"), "👍", ev("r3"));
    assert!(matches!(
        store.insert_reaction(&duplicate).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.reaction_by_event(&ev("r3")).await.unwrap(), None);
    assert_eq!(
        store.delete_reaction(&ev("r1")).await.unwrap(),
        Some(thumbs)
    );
    assert_eq!(
        store
            .reaction(&room(), &mid("m1"), &ghost("bob"), "👍")
            .await
            .unwrap(),
        None
    );
    store.insert_reaction(&duplicate).await.unwrap();
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct ChannelInfo {
    topic: String,
    modes: Vec<char>,
}

pub(crate) async fn portals_are_unique_both_ways(mut s: Subject) {
    let store = s.store().await;
    let info = ChannelInfo {
        topic: "rust".into(),
        modes: vec!['n', 't'],
    };
    let channel = Portal::new(PortalKey::new(cid("#rust")), room())
        .with_metadata(&info)
        .unwrap();
    let dm = Portal::new(
        PortalKey::new(cid("alice")).with_receiver(lid("bob")),
        owned_room_id!("!dm:example.org"),
    );
    store.put_portal(&channel).await.unwrap();
    store.put_portal(&dm).await.unwrap();
    drop(store);
    let store = s.reopen().await;
    let found = store
        .portal_by_key(&PortalKey::new(cid("#rust")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.metadata_as::<ChannelInfo>().unwrap(), Some(info));
    assert_eq!(
        store.portal_by_room(&room()).await.unwrap(),
        Some(channel.clone())
    );
    assert_eq!(
        store
            .portal_by_key(&PortalKey::new(cid("alice")))
            .await
            .unwrap(),
        None,
        "a receiver makes a different portal"
    );
    assert_eq!(
        store
            .portal_by_key(&PortalKey::new(cid("alice")).with_receiver(lid("bob")))
            .await
            .unwrap(),
        Some(dm.clone())
    );
    // A room already bridged to another chat is refused.
    let thief = Portal::new(PortalKey::new(cid("#go")), room());
    assert!(matches!(
        store.put_portal(&thief).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .portal_by_key(&PortalKey::new(cid("#go")))
            .await
            .unwrap(),
        None
    );
    // A chat moved to a new room frees its old one.
    let moved = Portal::new(
        PortalKey::new(cid("#rust")),
        owned_room_id!("!new:example.org"),
    );
    store.put_portal(&moved).await.unwrap();
    assert_eq!(store.portal_by_room(&room()).await.unwrap(), None);
    store.put_portal(&thief).await.unwrap();
    let keys: Vec<_> = store
        .portals()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(
        keys,
        [
            PortalKey::new(cid("#go")),
            PortalKey::new(cid("#rust")),
            PortalKey::new(cid("alice")).with_receiver(lid("bob"))
        ]
    );
    assert_eq!(
        store
            .delete_portal(&PortalKey::new(cid("#go")))
            .await
            .unwrap(),
        Some(thief)
    );
    assert_eq!(store.portal_by_room(&room()).await.unwrap(), None);
}

pub(crate) async fn ghosts_keep_remote_ids_rooms_profiles_and_metadata(mut s: Subject) {
    let store = s.store().await;
    let alice = ghost("alice");
    assert_eq!(store.ghost(&alice).await.unwrap(), GhostRecord::default());
    let updated = store
        .update_ghost(&alice, &|g| {
            g.registered = true;
            g.remote_id = Some(uid("alice@irc"));
            g.displayname = Some("Alice".into());
            g.set_metadata(&vec![1, 2, 3]).unwrap();
        })
        .await
        .unwrap();
    assert!(updated.registered);
    let r1 = owned_room_id!("!b:example.org");
    let r2 = owned_room_id!("!a:example.org");
    store.set_joined(&alice, &r1, true).await.unwrap();
    store.set_joined(&alice, &r2, true).await.unwrap();
    store
        .set_room_profile(&alice, &r1, &(Some("Alice in b".into()), None))
        .await
        .unwrap();

    drop(store);
    let store = s.reopen().await;
    let record = store.ghost(&alice).await.unwrap();
    assert_eq!(record, updated);
    assert_eq!(
        record.metadata_as::<Vec<u32>>().unwrap(),
        Some(vec![1, 2, 3])
    );
    let (user, by_remote) = store
        .ghost_by_remote(&uid("alice@irc"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((user, by_remote), (alice.clone(), updated));
    assert_eq!(
        store.joined_rooms(&alice).await.unwrap(),
        [r2.clone(), r1.clone()]
    );
    assert!(store.is_joined(&alice, &r1).await.unwrap());
    assert_eq!(
        store.room_profile(&alice, &r1).await.unwrap(),
        (Some("Alice in b".into()), None)
    );
    assert_eq!(store.room_profile(&alice, &r2).await.unwrap(), (None, None));
    store.set_joined(&alice, &r1, false).await.unwrap();
    assert!(!store.is_joined(&alice, &r1).await.unwrap());
    assert_eq!(store.joined_rooms(&alice).await.unwrap(), [r2]);

    // A remote user has one ghost.
    let err = store
        .update_ghost(&ghost("mallory"), &|g| g.remote_id = Some(uid("alice@irc")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.ghost(&ghost("mallory")).await.unwrap().remote_id,
        None
    );
    // Renaming the remote ID frees the old one.
    store
        .update_ghost(&alice, &|g| g.remote_id = Some(uid("alice2@irc")))
        .await
        .unwrap();
    assert!(
        store
            .ghost_by_remote(&uid("alice@irc"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .ghost_by_remote(&uid("alice2@irc"))
            .await
            .unwrap()
            .unwrap()
            .0,
        alice
    );
}

pub(crate) async fn bridge_values_are_typed_by_the_bridge(mut s: Subject) {
    let store = s.store().await;
    let info = ChannelInfo {
        topic: "x".into(),
        modes: vec!['s'],
    };
    store.put_typed("irc", "#x", &info).await.unwrap();
    store.put_typed("irc", "cursor", &42u64).await.unwrap();
    drop(store);
    let store = s.reopen().await;
    assert_eq!(
        store.get_typed::<ChannelInfo>("irc", "#x").await.unwrap(),
        Some(info)
    );
    assert_eq!(
        store.get_typed::<u64>("irc", "cursor").await.unwrap(),
        Some(42)
    );
    assert_eq!(
        store.get_typed::<u64>("other", "cursor").await.unwrap(),
        None
    );
    assert!(matches!(
        store.get_typed::<ChannelInfo>("irc", "cursor").await,
        Err(StoreError::Encode(_))
    ));
    store.set_value("irc", "cursor", None).await.unwrap();
    assert_eq!(store.value("irc", "cursor").await.unwrap(), None);
}
