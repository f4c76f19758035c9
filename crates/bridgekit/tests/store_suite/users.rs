//! Matrix users, their logins and the logins' portals.

use super::*;
use bridgekit::store::{LoginRecord, LoginState, PortalLogin, UserRecord};

pub(crate) fn matrix_user(name: &str) -> OwnedUserId {
    format!("@{name}:example.org").try_into().unwrap()
}

pub(crate) fn login(id: &str, user: &str) -> LoginRecord {
    LoginRecord::new(lid(id), matrix_user(user), uid(&format!("{id}-remote")))
}

pub(crate) async fn users_and_logins_survive_reopen_and_belong_to_one_user(mut s: Subject) {
    let store = s.store().await;
    let alice = matrix_user("alice");
    assert_eq!(store.user(&alice).await.unwrap(), None);
    let mut user = UserRecord::new(alice.clone());
    user.management_room = Some(room());
    store.put_user(&user).await.unwrap();

    let mut first = login("b-login", "alice")
        .with_remote_name("Alice B")
        .with_metadata(&serde_json::json!({"server": "irc.example.org", "nick": "alice"}))
        .unwrap();
    first.state = LoginState::Connected;
    store.put_login(&first).await.unwrap();
    store.put_login(&login("a-login", "alice")).await.unwrap();
    store.put_login(&login("c-login", "bob")).await.unwrap();

    // A remote account is logged in once: another Matrix user cannot take the login.
    let theft = store.put_login(&login("b-login", "bob")).await;
    assert!(matches!(theft, Err(StoreError::Conflict(_))), "{theft:?}");

    drop(store);
    let store = s.reopen().await;
    assert_eq!(store.user(&alice).await.unwrap(), Some(user));
    let got = store.login(&lid("b-login")).await.unwrap().unwrap();
    assert_eq!(got, first, "the login, its state and metadata are kept");
    let meta: serde_json::Value = got.metadata_as().unwrap().unwrap();
    assert_eq!(meta["nick"], "alice");
    let ids = |logins: Vec<LoginRecord>| -> Vec<String> {
        logins.into_iter().map(|l| l.id.to_string()).collect()
    };
    assert_eq!(
        ids(store.logins_of(&alice).await.unwrap()),
        ["a-login", "b-login"]
    );
    assert_eq!(
        ids(store.all_logins().await.unwrap()),
        ["a-login", "b-login", "c-login"]
    );

    // A state change replaces the record.
    let mut changed = got.clone();
    changed.state = LoginState::BadCredentials;
    changed.state_reason = Some("wrong password".into());
    store.put_login(&changed).await.unwrap();
    assert_eq!(
        store.login(&lid("b-login")).await.unwrap().unwrap().state,
        LoginState::BadCredentials
    );
}

pub(crate) async fn logins_are_placed_in_portals_with_one_preferred_per_user(mut s: Subject) {
    let store = s.store().await;
    let group = PortalKey::new(cid("#group"));
    let dm = PortalKey::new(cid("dm")).with_receiver(lid("a1"));
    for (id, user) in [("a1", "alice"), ("a2", "alice"), ("b1", "bob")] {
        store.put_login(&login(id, user)).await.unwrap();
    }
    let link = |portal: &PortalKey, id: &str, user: &str| {
        PortalLogin::new(portal.clone(), lid(id), matrix_user(user))
    };
    store
        .put_portal_login(&link(&group, "a1", "alice").preferred())
        .await
        .unwrap();
    store
        .put_portal_login(&link(&group, "b1", "bob"))
        .await
        .unwrap();
    store
        .put_portal_login(&link(&dm, "a1", "alice"))
        .await
        .unwrap();
    // alice's second login becomes her preferred one in the group.
    store
        .put_portal_login(&link(&group, "a2", "alice").preferred())
        .await
        .unwrap();

    drop(store);
    let store = s.reopen().await;
    let in_group = store.portal_logins(&group).await.unwrap();
    let summary: Vec<(String, bool)> = in_group
        .iter()
        .map(|l| (l.login_id.to_string(), l.preferred))
        .collect();
    assert_eq!(
        summary,
        [
            ("a1".into(), false),
            ("a2".into(), true),
            ("b1".into(), false)
        ]
    );
    let portals: Vec<PortalKey> = store
        .login_portals(&lid("a1"))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.portal)
        .collect();
    assert_eq!(portals, [group.clone(), dm.clone()], "ordered by chat ID");

    store.remove_portal_login(&group, &lid("b1")).await.unwrap();
    assert_eq!(store.portal_logins(&group).await.unwrap().len(), 2);
    assert!(store.login_portals(&lid("b1")).await.unwrap().is_empty());

    // Deleting a login takes it out of every portal.
    let removed = store.delete_login(&lid("a1")).await.unwrap();
    assert_eq!(removed.map(|l| l.id), Some(lid("a1")));
    assert_eq!(store.login(&lid("a1")).await.unwrap(), None);
    assert!(store.login_portals(&lid("a1")).await.unwrap().is_empty());
    assert!(store.portal_logins(&dm).await.unwrap().is_empty());
    let left: Vec<String> = store
        .portal_logins(&group)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.login_id.to_string())
        .collect();
    assert_eq!(left, ["a2"]);
    assert_eq!(store.delete_login(&lid("a1")).await.unwrap(), None);
}
