//! Puppet mode end to end, on real ngircd (with a server password) and real Synapse: alice
//! logs in with her own nick (her first choice is taken), speaks as herself, while bob, with
//! no login, goes through the relay; her login survives a bridge restart and an IRC server
//! restart, ends with `logout`, and a changed server password is told to her.

use super::*;

/// How many notices from `sender` in `room` contain `needle`.
async fn notices(user: &User, room: &str, sender: &str, needle: &str) -> usize {
    user.timeline(room)
        .await
        .iter()
        .filter(|e| {
            e["sender"] == sender
                && e["content"]["msgtype"] == "m.notice"
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(needle))
        })
        .count()
}

/// Reads until a line from `nick` containing `what` arrives; returns it.
async fn expect_from(irc: &mut IrcUser, nick: &str, what: &str) -> String {
    let from = format!(":{nick}!");
    loop {
        let line = irc.expect(what).await;
        if line.starts_with(&from) {
            return line;
        }
    }
}

/// Sends `command` and waits for a new notice containing `needle`.
async fn ask(user: &User, room: &str, bot: &str, command: &str, needle: &str) {
    let before = notices(user, room, bot, needle).await;
    user.send_text(room, command).await;
    wait_for(&format!("{needle:?} after {command:?}"), || async {
        (notices(user, room, bot, needle).await > before).then_some(())
    })
    .await;
}

/// alice's management room, and the portal of #test she bridged there, with bob joined.
async fn bridged_with_bob(alice: &User, bob: &User, bot: &str) -> (String, String) {
    let management = alice.room_with_bot(bot).await;
    ask(alice, &management, bot, "!join #test", "#test is bridged").await;
    let portal = accept_invite(alice, &management).await;
    alice
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/invite", q(&portal)),
            Some(json!({"user_id": bob.user_id})),
        )
        .await;
    bob.call(
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", q(&portal)),
        Some(json!({})),
    )
    .await;
    (management, portal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_puppet_mode_users_speak_on_irc_as_themselves() {
    let _serial = SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (mut ircd, port) = IrcServer::start_with_password(Some("pw1"));
    *NETWORK.lock().unwrap() = format!(
        "{{server: '127.0.0.1:{port}', nick: matrix, password: pw1, puppets: true, ask_password: true}}"
    );
    let mut tester = IrcUser::connect_with(port, "tester", Some("pw1")).await;
    tester.send("JOIN #test").await;
    tester.expect("JOIN").await;

    let mut env = Env::start().await;
    let bot = env.bot.clone();
    let alice = env.user("alice").await;
    let bob = env.user("bob").await;
    let (management, portal) = bridged_with_bob(&alice, &bob, &bot).await;

    // alice logs in; her first nick is taken by the tester.
    ask(&alice, &management, &bot, "!help", "!login [flow]").await;
    ask(&alice, &management, &bot, "!login", "Send your IRC nick").await;
    ask(
        &alice,
        &management,
        &bot,
        "tester",
        "Send your IRC server password",
    )
    .await;
    ask(&alice, &management, &bot, "pw1", "The nick tester is taken").await;
    ask(&alice, &management, &bot, "alice", "Logged in as alice").await;
    // Her own connection joins the channel of the portal she is in.
    expect_from(&mut tester, "alice", "JOIN").await;

    // Both directions: alice as herself, bob through the relay, the tester as a ghost.
    alice.send_text(&portal, "hello as alice").await;
    expect_from(&mut tester, "alice", "PRIVMSG #test :hello as alice").await;
    bob.send_text(&portal, "hello from bob").await;
    expect_from(&mut tester, "matrix", "PRIVMSG #test :<bob> hello from bob").await;
    tester.send("PRIVMSG #test :hi matrix").await;
    message_from(&alice, &portal, "@_irc_tester:localhost", "hi matrix").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let echoed = alice
        .timeline(&portal)
        .await
        .iter()
        .filter(|e| e["sender"] == "@_irc_alice:localhost" && e["type"] == "m.room.message")
        .count();
    assert_eq!(echoed, 0, "alice's own line is not bridged back as a ghost");
    ask(
        &alice,
        &management,
        &bot,
        "!list-logins",
        "alice: alice, connected",
    )
    .await;

    // A bridge restart: the login reconnects by itself.
    env.terminate_bridge();
    expect_from(&mut tester, "alice", "QUIT").await;
    env.start_bridge().await;
    expect_from(&mut tester, "alice", "JOIN").await;
    alice.send_text(&portal, "back after a restart").await;
    expect_from(&mut tester, "alice", "PRIVMSG #test :back after a restart").await;

    // The IRC server restarts: the login drops, reconnects and carries on.
    ircd.restart(Some("pw1"));
    let mut tester = IrcUser::connect_with(port, "tester", Some("pw1")).await;
    tester.send("JOIN #test").await;
    // Her own connection is back in the channel on the new server (NAMES lists her); the
    // login's state says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tester.send("NAMES #test").await;
        let names = tester.expect(" 353 ").await;
        if names
            .split(' ')
            .any(|n| n.trim_start_matches([':', '@', '+']) == "alice")
        {
            break;
        }
        assert!(Instant::now() < deadline, "alice never came back: {names}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ask(
        &alice,
        &management,
        &bot,
        "!list-logins",
        "alice: alice, connected",
    )
    .await;
    alice.send_text(&portal, "after the irc restart").await;
    expect_from(&mut tester, "alice", "PRIVMSG #test :after the irc restart").await;

    // logout ends her connection.
    ask(
        &alice,
        &management,
        &bot,
        "!logout alice",
        "Logged out of alice",
    )
    .await;
    expect_from(&mut tester, "alice", "QUIT").await;

    // Logged in again, the server's password changes under her: she is told, once.
    ask(&alice, &management, &bot, "!login", "Send your IRC nick").await;
    ask(
        &alice,
        &management,
        &bot,
        "alice",
        "Send your IRC server password",
    )
    .await;
    ask(&alice, &management, &bot, "pw1", "Logged in as alice").await;
    ircd.restart(Some("pw2"));
    wait_for("a notice about the refused password", || async {
        (notices(&alice, &management, &bot, "needs you").await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(notices(&alice, &management, &bot, "needs you").await, 1);
}

/// Calls the provisioning API with `token`.
async fn provision(
    env: &Env,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}/_matrix/provision/v3{path}", env.as_url);
    let mut request = env.http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_manager_logs_a_user_in_over_the_provisioning_api() {
    let _serial = SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_ircd, port) = IrcServer::start();
    *NETWORK.lock().unwrap() = format!(
        "{{server: '127.0.0.1:{port}', nick: matrix, puppets: true}}\n\
         provisioning: {{shared_secret: a-shared-secret-for-the-e2e-test}}"
    );
    let mut tester = IrcUser::connect(port, "tester").await;
    let env = Env::start().await;
    let alice = env.user("alice").await;

    // A token Synapse does not know is refused; alice's own access token, checked with
    // Synapse, acts for her.
    let (status, body) = provision(&env, Method::GET, "/whoami", "syt_not_a_token", None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    let (status, flows) = provision(&env, Method::GET, "/login/flows", &alice.token, None).await;
    assert_eq!(status, 200, "{flows}");
    assert_eq!(flows["flows"][0]["id"], "nick");

    let (status, step) =
        provision(&env, Method::POST, "/login/start/nick", &alice.token, None).await;
    assert_eq!(
        (status, step["type"].as_str()),
        (200, Some("user_input")),
        "{step}"
    );
    assert_eq!(step["user_input"]["fields"][0]["id"], "nick");
    let path = format!(
        "/login/step/{}/{}/user_input",
        step["login_id"].as_str().unwrap(),
        step["step_id"].as_str().unwrap()
    );
    let (status, done) = provision(
        &env,
        Method::POST,
        &path,
        &alice.token,
        Some(json!({"nick": "alice_p"})),
    )
    .await;
    assert_eq!(
        (status, done["type"].as_str()),
        (200, Some("complete")),
        "{done}"
    );
    assert_eq!(done["complete"]["user_login_id"], "alice_p");

    // Her connection is on IRC; whoami says connected.
    tester.send("WHOIS alice_p").await;
    tester.expect(" 311 tester alice_p ").await;
    wait_for("the login connected in whoami", || async {
        let (_, me) = provision(&env, Method::GET, "/whoami", &alice.token, None).await;
        (me["logins"][0]["state"]["state_event"] == "CONNECTED").then_some(())
    })
    .await;
    let (_, me) = provision(&env, Method::GET, "/whoami", &alice.token, None).await;
    assert_eq!(me["bridge_bot"], env.bot.as_str());
    assert_eq!(me["homeserver"], "localhost");

    // Logging out over the API ends her connection.
    let (status, _) = provision(&env, Method::POST, "/logout/alice_p", &alice.token, None).await;
    assert_eq!(status, 200);
    let (_, ids) = provision(&env, Method::GET, "/logins", &alice.token, None).await;
    assert_eq!(ids["login_ids"], json!([]));
    // One probe connection, asking again and again (a new one each time could find its own
    // nick still taken by the previous one, and be closed).
    let probe = tokio::sync::Mutex::new(IrcUser::connect(port, "prober").await);
    wait_for("alice_p to leave IRC", || async {
        let mut probe = probe.lock().await;
        probe.send("WHOIS alice_p").await;
        probe.expect(" 318 ").await; // end of WHOIS, after 401 or 311
        let gone = probe.seen.iter().any(|l| l.contains(" 401 "));
        gone.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_relay_mode_a_users_login_carries_the_others_and_unset_relay_is_told() {
    let _serial = SERIAL.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_ircd, port) = IrcServer::start();
    *NETWORK.lock().unwrap() = format!(
        "{{server: '127.0.0.1:{port}', nick: matrix, puppets: true}}\n\
         relay: {{enabled: true, text: '<{{displayname}}> {{message}}'}}"
    );
    let mut tester = IrcUser::connect(port, "tester").await;
    tester.send("JOIN #test").await;
    tester.expect("JOIN").await;
    let env = Env::start().await;
    let bot = env.bot.clone();
    let alice = env.user("alice").await;
    let bob = env.user("bob").await;
    let (management, portal) = bridged_with_bob(&alice, &bob, &bot).await;
    ask(&alice, &management, &bot, "!login", "Send your IRC nick").await;
    ask(&alice, &management, &bot, "alice", "Logged in as alice").await;
    expect_from(&mut tester, "alice", "JOIN").await;

    // No relay yet: bob, with no login, is told how to be heard.
    bob.send_text(&portal, "before any relay").await;
    notice_containing(&alice, &portal, &bot, "this room has no relay").await;

    // alice lends her login: bob's message goes out from her nick, in the operator's template.
    ask(
        &alice,
        &portal,
        &bot,
        "!set-relay",
        "now go out through your login alice",
    )
    .await;
    bob.send_text(&portal, "hello via relay").await;
    expect_from(&mut tester, "alice", "PRIVMSG #test :<bob> hello via relay").await;
    // Her own messages still go out plainly as hers.
    alice.send_text(&portal, "and me").await;
    expect_from(&mut tester, "alice", "PRIVMSG #test :and me").await;

    // Unset: bob is told again, and nothing of his reaches IRC.
    ask(
        &alice,
        &portal,
        &bot,
        "!unset-relay",
        "This room has no relay now",
    )
    .await;
    bob.send_text(&portal, "after unset").await;
    wait_for("a second no-relay notice", || async {
        (notices(&alice, &portal, &bot, "this room has no relay").await == 2).then_some(())
    })
    .await;
    alice.send_text(&portal, "last").await;
    let line = expect_from(&mut tester, "alice", "PRIVMSG #test :last").await;
    assert!(
        !tester.seen.iter().any(|l| l.contains("after unset")),
        "an unrelayed message reached IRC: {line}"
    );
}
