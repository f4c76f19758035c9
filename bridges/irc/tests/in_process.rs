//! The IRC bridge, tested in-process with bridgekit-testkit: a [`LineServer`] plays the IRC
//! server, the fake homeserver plays Synapse. A configured channel gets a portal alice is
//! invited to; what she says goes out through the relay nick; what IRC users say shows from
//! their ghosts.

use std::sync::Arc;
use std::time::Duration;

use bridgekit::RemoteUserId;
use bridgekit_testkit::{LineServer, MatrixUser, TestBridge, TestHomeserver};
use irc_bridge::IrcBridge;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// An IRC server, the bridge with `#c` configured, and alice in the channel's portal.
struct Scene {
    hs: Arc<TestHomeserver>,
    irc: LineServer,
    bridge: TestBridge,
    alice: MatrixUser,
    portal: String,
}

async fn scene() -> Scene {
    scene_with(false).await
}

/// The scene, with puppet mode on or off. The relay is connection 1.
async fn scene_with(puppets: bool) -> Scene {
    let hs = TestHomeserver::start();
    let irc = LineServer::start().await;
    let alice = hs.user("alice");
    alice.set_displayname("Alice");
    let bridge = TestBridge::builder(&hs)
        .network(json!({
            "server": irc.address(),
            "nick": "relay",
            "channels": ["#c"],
            "invite": [alice.user_id()],
            "puppets": puppets,
        }))
        .start(IrcBridge::default())
        .await;
    // The relay registers; the server welcomes it; it joins the channel.
    irc.wait_for_line_starting("NICK relay", WAIT).await;
    irc.send(":irc.test 001 relay :Welcome");
    irc.wait_for_line_starting("JOIN #c", WAIT).await;
    let portal = wait_for_invite(&hs, alice.user_id()).await;
    alice.join(&portal);
    Scene {
        hs,
        irc,
        bridge,
        alice,
        portal,
    }
}

async fn wait_for_invite(hs: &TestHomeserver, user: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(room) = hs.rooms_of(user, "invite").pop() {
            return room;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} was never invited to a portal"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_configured_channel_gets_a_named_portal() {
    let s = scene().await;
    let name = s.hs.state(&s.portal, "m.room.name", "").unwrap();
    assert_eq!(name["name"], "#c");
    assert_eq!(
        s.hs.power_level(&s.portal, s.alice.user_id()),
        50,
        "who asked for the bridge moderates its room"
    );
}

#[tokio::test]
async fn matrix_speech_goes_out_through_the_relay() {
    let s = scene().await;
    s.alice.say(&s.portal, "hello irc");
    s.irc
        .wait_for_line_starting("PRIVMSG #c :<Alice> hello irc", WAIT)
        .await;
    s.alice.emote(&s.portal, "waves");
    s.irc
        .wait_for_line_starting("PRIVMSG #c :\u{1}ACTION Alice waves\u{1}", WAIT)
        .await;
    let original = s.alice.say(&s.portal, "helo");
    s.irc
        .wait_for_line_starting("PRIVMSG #c :<Alice> helo", WAIT)
        .await;
    s.alice.edit(&s.portal, &original, "hello");
    s.irc
        .wait_for_line_starting("PRIVMSG #c :<Alice> * hello", WAIT)
        .await;
}

#[tokio::test]
async fn irc_users_speak_through_their_ghosts() {
    let s = scene().await;
    s.irc.send(":Bob!b@h JOIN #c");
    s.irc.send(":Bob!b@h PRIVMSG #c :hi matrix");
    s.irc.send(":Bob!b@h PRIVMSG #c :\u{1}ACTION dances\u{1}");
    let bob = s.bridge.ghost_user_id(&RemoteUserId::new("bob").unwrap());
    s.hs.wait_for_message(&s.portal, bob.as_str(), "hi matrix")
        .await;
    let dance =
        s.hs.wait_for_message(&s.portal, bob.as_str(), "dances")
            .await;
    assert_eq!(dance.msgtype(), Some("m.emote"));
    assert_eq!(s.hs.displayname(bob.as_str()).as_deref(), Some("Bob"));

    // A rename keeps the ghost and changes its name; its next words come from the same ghost.
    s.irc.send(":Bob!b@h NICK Robert");
    s.irc.send(":Robert!b@h PRIVMSG #c :still me");
    s.hs.wait_for_message(&s.portal, bob.as_str(), "still me")
        .await;
    assert_eq!(s.hs.displayname(bob.as_str()).as_deref(), Some("Robert"));
    let robert = s
        .bridge
        .ghost_user_id(&RemoteUserId::new("robert").unwrap());
    assert_eq!(
        s.hs.members(&s.portal).get(robert.as_str()),
        None,
        "no second ghost for the new nick"
    );
}

#[tokio::test]
async fn the_relay_answers_pings_and_rejoins_after_a_kick() {
    let s = scene().await;
    s.irc.send("PING :tok123");
    s.irc.wait_for_line_starting("PONG", WAIT).await;
    let joins_before = s
        .irc
        .lines()
        .iter()
        .filter(|l| l.starts_with("JOIN #c"))
        .count();
    s.irc.send(":op!o@h KICK #c relay :out");
    let deadline = tokio::time::Instant::now() + WAIT;
    while s
        .irc
        .lines()
        .iter()
        .filter(|l| l.starts_with("JOIN #c"))
        .count()
        == joins_before
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never rejoined"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers the registration of the first connection after connection `after` that asks for
/// `nick` with the welcome (or with `433` when `taken`); returns that connection's number.
async fn welcome(irc: &LineServer, after: usize, nick: &str, taken: bool) -> usize {
    let asked = format!("NICK {nick}");
    let (conn, _) = irc
        .wait_for_line_by(WAIT, |c, l| c > after && l == asked)
        .await;
    if taken {
        irc.send_to(
            conn,
            &format!(":irc.test 433 * {nick} :Nickname already in use"),
        );
    } else {
        irc.send_to(conn, &format!(":irc.test 001 {nick} :Welcome"));
    }
    conn
}

#[tokio::test]
async fn in_puppet_mode_a_user_logs_in_with_their_own_nick_and_speaks_as_themselves() {
    let Scene {
        hs,
        irc,
        bridge,
        alice,
        portal,
    } = scene_with(true).await;
    let relay = 1;

    // alice logs in from her room with the bot; her first nick is taken.
    let dm = alice.create_room();
    alice.invite(&dm, bridge.bot_user_id().as_str());
    let bot = bridge.bot_user_id().to_string();
    let notice = |text: &'static str| {
        let (hs, bot, dm) = (hs.clone(), bot.clone(), dm.clone());
        async move {
            hs.wait_for(&dm, text, WAIT, |e| {
                e.sender == bot && e.body().is_some_and(|b| b.contains(text))
            })
            .await
        }
    };
    alice.say(&dm, "!login");
    notice("Send your IRC nick").await;
    alice.say(&dm, "alice");
    let taken = welcome(&irc, relay, "alice", true).await;
    notice("The nick alice is taken").await;
    alice.say(&dm, "alice_m");
    let probe = welcome(&irc, taken, "alice_m", false).await;
    notice("Logged in as alice_m").await;
    // Her own connection registers and joins the channel of the portal she is in.
    let own = welcome(&irc, probe, "alice_m", false).await;
    irc.wait_for_line_by(WAIT, |c, l| c == own && l == "JOIN #c")
        .await;

    // She speaks as herself; the relay does not bridge her line back.
    alice.say(&portal, "hello as me");
    irc.wait_for_line_by(WAIT, |c, l| c == own && l == "PRIVMSG #c :hello as me")
        .await;
    irc.send_to(relay, ":alice_m!a@h PRIVMSG #c :hello as me");
    // bob has no login: he goes through the relay.
    let bob = hs.user("bob");
    alice.invite(&portal, bob.user_id());
    bob.join(&portal);
    bob.say(&portal, "hi all");
    irc.wait_for_line_by(WAIT, |c, l| {
        c == relay && l.starts_with("PRIVMSG #c :<bob> hi all")
    })
    .await;
    // An IRC user still appears as a ghost, once.
    irc.send_to(relay, ":Carol!c@h PRIVMSG #c :hi matrix");
    let carol = bridge.ghost_user_id(&RemoteUserId::new("carol").unwrap());
    hs.wait_for_message(&portal, carol.as_str(), "hi matrix")
        .await;
    let alice_ghost = bridge.ghost_user_id(&RemoteUserId::new("alice_m").unwrap());
    let from_ghost = hs
        .messages(&portal)
        .iter()
        .filter(|e| e.sender == alice_ghost.as_str())
        .count();
    assert_eq!(
        from_ghost, 0,
        "alice's own line is not bridged back as a ghost"
    );

    // Her IRC presence follows her Matrix membership: she leaves, her nick parts.
    alice.leave(&portal);
    irc.wait_for_line_by(WAIT, |c, l| c == own && l.starts_with("PART #c"))
        .await;

    // logout ends her connection.
    alice.say(&dm, "!logout alice_m");
    notice("Logged out of alice_m").await;
    irc.wait_for_line_by(WAIT, |c, l| c == own && l.starts_with("QUIT"))
        .await;
}
