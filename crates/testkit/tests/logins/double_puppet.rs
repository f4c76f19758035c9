//! Double puppeting: what alice's own remote account does appears from her Matrix account,
//! is never bridged back, and falls back to her ghost when the homeserver refuses.

use bridgekit::{MessageId, RemoteContent, RemoteEvent, RemoteMessage, RemoteUser, RemoteUserId};

use crate::scene::*;

impl Scene {
    /// alice's remote account writes `text` (from her phone), as message `id`.
    async fn phone_says(&self, id: &str, text: &str) {
        let login = self.original.logins.lock().unwrap()[0].clone();
        let sender = RemoteUser::new(RemoteUserId::new("alice-r").unwrap());
        let message = RemoteMessage::new(
            MessageId::new(id).unwrap(),
            sender,
            RemoteContent::text(text),
        );
        login
            .remote_event(&group(), RemoteEvent::Message(message))
            .await
            .unwrap();
    }

    /// Waits for `text` in `room` and returns who sent it.
    async fn sender_of(&self, room: &str, text: &str) -> bridgekit_testkit::RoomEvent {
        self.hs
            .wait_for(room, &format!("a message saying {text:?}"), WAIT, |e| {
                e.body() == Some(text)
            })
            .await
    }
}

#[tokio::test]
async fn her_own_remote_messages_come_from_her_and_a_refused_token_falls_back_to_the_ghost() {
    let s = Scene::with(|b| b.double_puppeting()).await;
    s.log_in().await;
    s.notice(&s.dm, "appears as you in Matrix (double puppeting)")
        .await;
    let portal = s.join_group().await;

    s.phone_says("p1", "from my phone").await;
    let event = s.sender_of(&portal, "from my phone").await;
    assert_eq!(event.sender, s.alice.user_id(), "sent as alice herself");
    assert_eq!(
        event.content["fi.mau.double_puppet_source"],
        s.bridge.config().appservice.id.as_str(),
        "marked as the bridge's own"
    );
    // Loop safety: the homeserver hands the event back to the bridge (it is alice's, in a
    // portal), and it must not go out to the network. What she types in Matrix afterwards
    // does, so once that arrived the echo was passed over (one room, in order).
    s.alice.say(&portal, "typed in matrix");
    s.net.wait_received(1, WAIT).await;
    assert_eq!(
        s.net.received(),
        [("alice-r".to_owned(), "typed in matrix".to_owned())]
    );

    // The operator removes the double-puppet registration: the next message is refused as
    // alice, then sent by her ghost, and she is told once.
    s.hs.revoke_double_puppet();
    s.phone_says("p2", "after the revoke").await;
    let ghost = s
        .bridge
        .ghost_user_id(&RemoteUserId::new("alice-r").unwrap());
    let event = s.sender_of(&portal, "after the revoke").await;
    assert_eq!(event.sender, ghost.as_str(), "the ghost stands in");
    s.notice(&s.dm, "Double puppeting stopped").await;
    s.phone_says("p3", "still the ghost").await;
    assert_eq!(
        s.sender_of(&portal, "still the ghost").await.sender,
        ghost.as_str()
    );
    assert_eq!(s.count(&s.dm, "Double puppeting stopped"), 1, "told once");

    // Her own access token turns it on again; the message holding it is redacted.
    let token_message = s
        .alice
        .say(&s.dm, &format!("!login-matrix {}", s.alice.access_token()));
    s.notice(&s.dm, "Double puppeting is on").await;
    assert!(
        s.hs.event(&token_message).unwrap().redacted,
        "the token is redacted"
    );
    s.phone_says("p4", "with my own token").await;
    assert_eq!(
        s.sender_of(&portal, "with my own token").await.sender,
        s.alice.user_id()
    );

    // She logs out of that client: the token is revoked, the ghost stands in again.
    s.alice.revoke_access_token();
    s.phone_says("p5", "token revoked").await;
    assert_eq!(
        s.sender_of(&portal, "token revoked").await.sender,
        ghost.as_str()
    );
    s.notice(&s.dm, "Double puppeting stopped").await;
    // Nothing of hers went back to the network.
    assert_eq!(s.net.received().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_logout_matrix_turns_puppeting_off() {
    let s = Scene::new().await;
    s.log_in().await;
    let portal = s.join_group().await;
    // Without a secret there is no automatic double puppeting: her ghost speaks for her.
    s.phone_says("q1", "ghost first").await;
    let ghost = s
        .bridge
        .ghost_user_id(&RemoteUserId::new("alice-r").unwrap());
    assert_eq!(
        s.sender_of(&portal, "ghost first").await.sender,
        ghost.as_str()
    );

    // bob's token is not alice's.
    let bob = s.hs.user("bob");
    s.alice
        .say(&s.dm, &format!("!login-matrix {}", bob.access_token()));
    s.notice(&s.dm, "did not take that token").await;
    s.alice.say(&s.dm, "!login-matrix not-a-token");
    s.notice(&s.dm, "did not take that token").await;

    s.alice
        .say(&s.dm, &format!("!login-matrix {}", s.alice.access_token()));
    s.notice(&s.dm, "Double puppeting is on").await;
    s.phone_says("q2", "as me").await;
    assert_eq!(
        s.sender_of(&portal, "as me").await.sender,
        s.alice.user_id()
    );

    s.alice.say(&s.dm, "!logout-matrix");
    s.notice(&s.dm, "Double puppeting is off").await;
    s.phone_says("q3", "ghost again").await;
    assert_eq!(
        s.sender_of(&portal, "ghost again").await.sender,
        ghost.as_str()
    );
}
