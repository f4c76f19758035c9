//! Relay mode: users without a login speak through the portal's relay login.

use crate::scene::*;

#[tokio::test]
async fn in_relay_mode_users_without_a_login_speak_through_the_portals_relay() {
    let s = Scene::with(|b| b.set("relay.enabled", true)).await;
    s.log_in().await;
    let portal = s.join_group().await;
    let bob = s.hs.user("bob");
    bob.set_displayname("Bob");
    s.alice.invite(&portal, bob.user_id());
    bob.join(&portal);

    // No relay yet: bob is told to log in.
    bob.say(&portal, "anyone?");
    s.notice(&portal, "log in first").await;
    // bob has no login to relay through; alice has.
    bob.say(&portal, "!set-relay");
    s.notice(&portal, "you have no login in this room").await;
    s.alice.say(&portal, "!set-relay");
    s.notice(&portal, "now go out through your login alice-r")
        .await;

    bob.say(&portal, "hello via alice");
    bob.emote(&portal, "waves");
    let received = s.net.wait_received(2, WAIT).await;
    assert_eq!(
        received,
        [
            ("alice-r".to_owned(), "Bob: hello via alice".to_owned()),
            ("alice-r".to_owned(), "* Bob waves".to_owned()),
        ]
    );
    // alice's own messages still go out as hers, unformatted.
    s.alice.say(&portal, "mine");
    let received = s.net.wait_received(3, WAIT).await;
    assert_eq!(received[2], ("alice-r".to_owned(), "mine".to_owned()));

    // A reaction would look like the relay's own: refused with a clear notice.
    let target =
        s.hs.messages(&portal)
            .into_iter()
            .find(|e| e.body() == Some("mine"))
            .unwrap();
    bob.react(&portal, &target.event_id, "👍");
    s.notice(&portal, "reactions cannot go through this room's relay")
        .await;

    s.alice.say(&portal, "!unset-relay");
    s.notice(&portal, "This room has no relay now").await;
    bob.say(&portal, "still there?");
    wait_until("bob to be told", || s.count(&portal, "log in first") == 2).await;
    assert_eq!(s.net.received().len(), 3);
}
