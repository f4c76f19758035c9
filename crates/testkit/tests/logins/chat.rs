//! Logging in from the management room: password and code flows, cancel, timeout,
//! permissions, restarts, states told once, shared chats, logout.

use std::time::Duration;

use bridgekit::store::LoginState;
use bridgekit::{LoginId, MessageId, RemoteEvent, RemoteUserId};
use serde_json::json;

use crate::scene::*;

#[tokio::test]
async fn a_user_logs_in_and_speaks_through_their_own_account() {
    let s = Scene::new().await;
    s.log_in().await;
    let portal = s.join_group().await;
    s.alice.say(&portal, "hello group");
    let received = s.net.wait_received(1, WAIT).await;
    assert_eq!(received, [("alice-r".to_owned(), "hello group".to_owned())]);

    // list-logins shows the login and its state.
    s.alice.say(&s.dm, "!list-logins");
    s.notice(&s.dm, "alice-r: alice-r on the group network, connected")
        .await;

    // bob has no login: his message is refused with a notice, not sent as anyone.
    let bob = s.hs.user("bob");
    s.alice.invite(&portal, bob.user_id());
    bob.join(&portal);
    bob.say(&portal, "me too");
    s.notice(&portal, "log in first").await;
    assert_eq!(s.net.received().len(), 1);
}

#[tokio::test]
async fn a_wrong_password_is_asked_again_and_a_secret_may_look_like_a_command() {
    let s = Scene::new().await;
    s.alice.say(&s.dm, "!login password");
    s.notice(&s.dm, "Send your account name").await;
    s.alice.say(&s.dm, "alice-r");
    s.notice(&s.dm, "Send your password").await;
    // A password that starts with the command prefix is an answer, not a command (which
    // would echo it back).
    let secret = s.alice.say(&s.dm, "!Nope x");
    s.notice(&s.dm, "That did not work").await;
    assert!(s.hs.event(&secret).unwrap().redacted);
    let echoed =
        s.hs.messages(&s.dm)
            .iter()
            .any(|e| e.body().is_some_and(|b| b.to_lowercase().contains("nope")));
    assert!(!echoed, "the secret is not echoed back");
    s.alice.say(&s.dm, "!cancel");
    s.notice(&s.dm, "the login is cancelled").await;
    // After a cancel, plain messages are no answers any more: nothing asks again.
    s.alice.say(&s.dm, "hunter2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.no_logins().await);
}

#[tokio::test]
async fn a_login_reconnects_after_a_restart_and_bad_credentials_are_told_once() {
    let mut s = Scene::new().await;
    s.log_in().await;
    let portal = s.join_group().await;
    assert_eq!(s.connects.lock().unwrap().len(), 1);

    s.bridge.restart(s.bridge_again()).await;
    wait_until("the login to reconnect", || {
        s.connects.lock().unwrap().len() == 2
    })
    .await;
    s.alice.say(&portal, "after the restart");
    s.net.wait_received(1, WAIT).await;

    // The password changes elsewhere: the next start finds bad credentials and says so once.
    s.net.set_account("alice-r", "changed");
    s.bridge.restart(s.bridge_again()).await;
    s.notice(&s.dm, "needs you: the network refused your credentials")
        .await;
    s.bridge.restart(s.bridge_again()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bot = s.bridge.bot_user_id().to_string();
    let told =
        s.hs.messages(&s.dm)
            .iter()
            .filter(|e| e.sender == bot && e.body().is_some_and(|b| b.contains("needs you")))
            .count();
    assert_eq!(
        told, 1,
        "a state the user must act on is told once, not on every start"
    );
    let login = s
        .bridge
        .ctx()
        .store()
        .login(&LoginId::new("alice-r").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.state, LoginState::BadCredentials);

    // logout forgets the login; alice's messages in the portal are no longer hers to send.
    s.alice.say(&s.dm, "!logout alice-r");
    s.notice(&s.dm, "Logged out of alice-r").await;
    assert!(s.no_logins().await);
    s.alice.say(&portal, "gone");
    s.notice(&portal, "log in first").await;
}

#[tokio::test]
async fn a_code_login_waits_for_the_phone_and_its_wait_can_be_cancelled() {
    let s = Scene::new().await;
    // Two flows: `login` alone lists them.
    s.alice.say(&s.dm, "!login");
    s.notice(&s.dm, "!login code: Code").await;
    s.alice.say(&s.dm, "!login code");
    s.notice(&s.dm, "Your code: 4711").await;
    // One login per user at a time.
    s.alice.say(&s.dm, "!login password");
    s.notice(&s.dm, "a login is already in progress").await;
    s.alice.say(&s.dm, "!cancel");
    s.notice(&s.dm, "the login is cancelled").await;
    wait_until("the process to be cancelled", || {
        s.original
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    s.original.confirm.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.no_logins().await);

    // Again, and the phone confirms.
    s.alice.say(&s.dm, "!login code");
    wait_until("a second code", || s.count(&s.dm, "Your code: 4711") == 2).await;
    s.original.confirm.notify_one();
    s.notice(&s.dm, "Logged in as alice-r").await;
}

#[tokio::test]
async fn a_login_left_waiting_times_out() {
    let s = Scene::with(|b| b.set("bridge.login_timeout_secs", 1)).await;
    s.alice.say(&s.dm, "!login password");
    s.notice(&s.dm, "Send your account name").await;
    s.notice(&s.dm, "the login timed out").await;
    // The answer that comes too late is no answer.
    s.alice.say(&s.dm, "alice-r");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked =
        s.hs.messages(&s.dm)
            .iter()
            .filter(|e| e.body().is_some_and(|b| b.contains("Send your password")))
            .count();
    assert_eq!(asked, 0);
}

#[tokio::test]
async fn who_may_log_in_is_configured_and_the_gauge_counts_logins_by_state() {
    let s = Scene::with(|b| {
        b.set(
            "bridge.permissions",
            json!({"*": "commands", "@alice:localhost": "user"}),
        )
    })
    .await;
    let (bob, bobs) = s.bob(false).await;
    bob.say(&bobs, "!login password");
    s.notice(
        &bobs,
        "you may not log in to this bridge (your permission is commands",
    )
    .await;

    s.log_in().await;
    let metrics = reqwest::get(format!("{}/metrics", s.bridge.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Other tests' bridges in this process count too: at least this one is connected.
    let connected = metrics
        .lines()
        .find_map(|l| l.strip_prefix("bridgekit_logins{state=\"connected\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(connected.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test]
async fn a_message_two_logins_receive_in_a_shared_chat_is_bridged_once() {
    let s = Scene::new().await;
    s.log_in().await;
    let portal = s.join_group().await;
    // bob logs in too, from his own room.
    s.bob(true).await;
    wait_until("bob's login to connect", || {
        s.original.logins.lock().unwrap().len() == 2
    })
    .await;
    // carol's message reaches both accounts; each login hands it over.
    let logins = s.original.logins.lock().unwrap().clone();
    for login in &logins {
        let message = bridgekit::RemoteMessage::new(
            MessageId::new("carol-1").unwrap(),
            bridgekit::RemoteUser::new(RemoteUserId::new("carol").unwrap()),
            bridgekit::RemoteContent::text("hello both"),
        );
        login
            .remote_event(&group(), RemoteEvent::Message(message))
            .await
            .unwrap();
    }
    let carol = s.bridge.ghost_user_id(&RemoteUserId::new("carol").unwrap());
    s.hs.wait_for_message(&portal, carol.as_str(), "hello both")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copies =
        s.hs.messages(&portal)
            .iter()
            .filter(|e| e.body() == Some("hello both"))
            .count();
    assert_eq!(copies, 1, "bridged once, not once per login");
}

#[tokio::test]
async fn with_kick_on_logout_a_logout_removes_the_user_from_the_logins_portals() {
    let s = Scene::with(|b| b.set("bridge.kick_on_logout", true)).await;
    s.log_in().await;
    let portal = s.join_group().await;
    s.alice.say(&s.dm, "!logout alice-r");
    s.notice(&s.dm, "Logged out of alice-r").await;
    s.hs.wait_for(&portal, "alice kicked", WAIT, |e| {
        e.membership() == Some("leave") && e.state_key.as_deref() == Some(s.alice.user_id())
    })
    .await;
    assert_eq!(
        s.hs.members(&s.dm)
            .get(s.alice.user_id())
            .map(String::as_str),
        Some("join"),
        "her management room stays"
    );
}

#[tokio::test]
async fn a_cookie_login_in_the_chat_asks_for_each_value_and_redacts_it() {
    let s = Scene::new().await;
    s.alice.say(&s.dm, "!login cookies");
    s.notice(&s.dm, "Log in at https://group.example/login in a browser")
        .await;
    s.notice(&s.dm, "Send your cookie session (of group.example)")
        .await;
    let secret = s.alice.say(&s.dm, "hunter2");
    s.notice(&s.dm, "Logged in as alice-r").await;
    assert!(
        s.hs.event(&secret).unwrap().redacted,
        "the cookie is redacted"
    );
}
