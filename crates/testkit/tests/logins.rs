//! Per-user logins, in-process: a user logs in from their management room, their messages in
//! a portal go out through their own account, someone without a login is told so, the login
//! survives a restart, a state the user must act on is told once, and logout ends it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridgekit::logins::{
    FieldKind, LoginContext, LoginField, LoginFlow, LoginInput, LoginProcess, LoginStep,
    NetworkClient, NewLogin,
};
use bridgekit::ruma::UserId;
use bridgekit::store::{LoginRecord, LoginState, PortalKey};
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, ChatInfo, LoginId, MatrixMessage, MessageId,
    RemoteEvent, RemoteUserId, RetryLater, Sent, async_trait,
};
use bridgekit_testkit::{MatrixUser, ScriptedNetwork, TestBridge, TestHomeserver};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// What the network received: (account, text).
type Net = ScriptedNetwork<(String, String)>;

/// A bridge whose users each log into their own account on a scripted network, where every
/// account is in one group chat, `group`.
#[derive(Clone, Default)]
struct GroupBridge {
    net: Net,
    /// Logins connected, in order (to see reconnects).
    connects: Arc<Mutex<Vec<String>>>,
    /// The connected logins' contexts, for the test to deliver remote events through.
    logins: Arc<Mutex<Vec<LoginContext>>>,
    /// Confirms a code login, as the user's phone would.
    confirm: Arc<tokio::sync::Notify>,
    /// Set when a login process was cancelled.
    cancelled: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl Bridge for GroupBridge {
    /// Users without a login are told to log in.
    async fn handle_message(
        &self,
        _: &BridgeContext,
        _: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        Err("log in first: you have no login in this chat".into())
    }

    fn login_flows(&self) -> Vec<LoginFlow> {
        vec![
            LoginFlow::new("password", "Password", "your account name and password"),
            LoginFlow::new("code", "Code", "confirm a code on your phone"),
        ]
    }

    async fn start_login(
        &self,
        _: &BridgeContext,
        _: &UserId,
        flow: &str,
    ) -> Result<Box<dyn LoginProcess>, BridgeError> {
        Ok(match flow {
            "code" => Box::new(CodeLogin(self.clone())),
            _ => Box::new(PasswordLogin(self.net.clone())),
        })
    }

    async fn load_login(
        &self,
        _: &BridgeContext,
        login: &LoginRecord,
    ) -> Result<Arc<dyn NetworkClient>, BridgeError> {
        Ok(Arc::new(Account {
            net: self.net.clone(),
            name: login.remote_id.to_string(),
            secret: login.metadata["secret"].as_str().unwrap_or("").to_owned(),
            connects: self.connects.clone(),
            logins: self.logins.clone(),
        }))
    }
}

struct PasswordLogin(Net);

#[async_trait]
impl LoginProcess for PasswordLogin {
    async fn start(&mut self) -> Result<LoginStep, BridgeError> {
        Ok(LoginStep::Input {
            instructions: "Log in to the group network.".into(),
            fields: vec![
                LoginField::new("name", "account name", FieldKind::Username),
                LoginField::new("password", "password", FieldKind::Password),
            ],
        })
    }

    async fn submit(&mut self, input: LoginInput) -> Result<LoginStep, BridgeError> {
        let (name, password) = (&input["name"], &input["password"]);
        if self.0.check_login(name, password).is_err() {
            return Ok(LoginStep::Input {
                instructions: "That did not work; try again.".into(),
                fields: vec![LoginField::new("password", "password", FieldKind::Password)],
            });
        }
        let login = NewLogin::new(
            LoginId::new(name.as_str())?,
            RemoteUserId::new(name.as_str())?,
        )
        .with_remote_name(format!("{name} on the group network"))
        .with_metadata(&json!({"secret": password}))?;
        Ok(LoginStep::Complete(login))
    }
}

/// Shows a code and waits for the user's phone to confirm it.
struct CodeLogin(GroupBridge);

#[async_trait]
impl LoginProcess for CodeLogin {
    async fn start(&mut self) -> Result<LoginStep, BridgeError> {
        Ok(LoginStep::Display {
            instructions: "Type this code on your phone.".into(),
            display: bridgekit::logins::Display::Code("4711".into()),
        })
    }

    async fn wait(&mut self) -> Result<LoginStep, BridgeError> {
        self.0.confirm.notified().await;
        let login = NewLogin::new(LoginId::new("alice-r")?, RemoteUserId::new("alice-r")?)
            .with_metadata(&json!({"secret": "hunter2"}))?;
        Ok(LoginStep::Complete(login))
    }

    async fn cancel(&mut self) {
        self.0
            .cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One logged-in account.
struct Account {
    net: Net,
    name: String,
    secret: String,
    connects: Arc<Mutex<Vec<String>>>,
    logins: Arc<Mutex<Vec<LoginContext>>>,
}

fn group() -> PortalKey {
    PortalKey::new(ChatId::new("group").unwrap())
}

#[async_trait]
impl NetworkClient for Account {
    async fn connect(&self, login: &LoginContext) -> Result<(), BridgeError> {
        if let Err(refused) = self.net.check_login(&self.name, &self.secret) {
            return login
                .set_state(LoginState::BadCredentials, Some(refused.to_string()))
                .await;
        }
        self.connects.lock().unwrap().push(self.name.clone());
        self.logins.lock().unwrap().push(login.clone());
        login.set_state(LoginState::Connected, None).await?;
        // The network tells the account about its group chat.
        let mut info = ChatInfo::default();
        info.name = Some("The group".into());
        info.invite = vec![login.user_id().to_owned()];
        login
            .remote_event(&group(), RemoteEvent::NewChat(info))
            .await
    }

    async fn disconnect(&self) {}

    async fn handle_message(
        &self,
        _login: &LoginContext,
        m: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        let n = self
            .net
            .take((self.name.clone(), m.content.body().to_owned()))
            .map_err(RetryLater::new)?;
        Ok(Sent::message(MessageId::new(format!("g{n}"))?))
    }
}

/// The homeserver, the bridge, and alice with a management room the bot moderates (so it
/// may redact the secrets she types).
struct Scene {
    hs: Arc<TestHomeserver>,
    bridge: TestBridge,
    net: Net,
    connects: Arc<Mutex<Vec<String>>>,
    alice: MatrixUser,
    dm: String,
    /// The bridge value first started (its shared parts).
    original: GroupBridge,
}

impl Scene {
    async fn new() -> Self {
        Self::with(|b| b).await
    }

    /// A scene whose bridge config `configure` adds to.
    async fn with(
        configure: impl FnOnce(
            bridgekit_testkit::TestBridgeBuilder,
        ) -> bridgekit_testkit::TestBridgeBuilder,
    ) -> Self {
        let hs = TestHomeserver::start();
        let original = GroupBridge::default();
        let net = original.net.clone();
        net.set_account("alice-r", "hunter2");
        net.set_account("bob-r", "swordfish");
        let connects = original.connects.clone();
        let bridge = configure(TestBridge::builder(&hs))
            .start(original.clone())
            .await;
        let alice = hs.user("alice");
        let dm = alice.create_room();
        alice.invite(&dm, bridge.bot_user_id().as_str());
        let bot = bridge.bot_user_id().to_string();
        alice.set_state(
            &dm,
            "m.room.power_levels",
            "",
            json!({"users": {alice.user_id(): 100, bot: 50}}),
        );
        Scene {
            hs,
            bridge,
            net,
            connects,
            alice,
            dm,
            original,
        }
    }

    /// The bridge for a restart: the last run's login contexts are let go (they hold its
    /// store).
    fn bridge_again(&self) -> GroupBridge {
        self.original.logins.lock().unwrap().clear();
        self.original.clone()
    }

    /// Waits for a notice from the bot in `room` containing `text`.
    async fn notice(&self, room: &str, text: &str) -> bridgekit_testkit::RoomEvent {
        let bot = self.bridge.bot_user_id().to_string();
        self.hs
            .wait_for(room, &format!("a notice saying {text:?}"), WAIT, |e| {
                e.sender == bot && e.body().is_some_and(|b| b.contains(text))
            })
            .await
    }

    async fn log_in(&self) {
        self.alice.say(&self.dm, "!login password");
        self.notice(&self.dm, "Send your account name").await;
        self.alice.say(&self.dm, "alice-r");
        self.notice(&self.dm, "Send your password").await;
        let secret = self.alice.say(&self.dm, "hunter2");
        self.notice(&self.dm, "Logged in as alice-r on the group network")
            .await;
        assert!(
            self.hs.event(&secret).unwrap().redacted,
            "the password is redacted from the room"
        );
    }

    /// The portal of the group chat, once alice is invited; she joins it.
    async fn join_group(&self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(room) = self.hs.rooms_of(self.alice.user_id(), "invite").pop() {
                self.alice.join(&room);
                return room;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never invited to the group's portal"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

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
    assert!(
        s.bridge
            .ctx()
            .store()
            .all_logins()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_login_reconnects_after_a_restart_and_bad_credentials_are_told_once() {
    let mut s = Scene::new().await;
    s.log_in().await;
    let portal = s.join_group().await;
    assert_eq!(s.connects.lock().unwrap().len(), 1);

    s.bridge.restart(s.bridge_again()).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.connects.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the login did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    assert!(
        s.bridge
            .ctx()
            .store()
            .all_logins()
            .await
            .unwrap()
            .is_empty()
    );
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
    let deadline = tokio::time::Instant::now() + WAIT;
    while !s
        .original
        .cancelled
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the process was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.original.confirm.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        s.bridge
            .ctx()
            .store()
            .all_logins()
            .await
            .unwrap()
            .is_empty()
    );

    // Again, and the phone confirms.
    s.alice.say(&s.dm, "!login code");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let codes =
            s.hs.messages(&s.dm)
                .iter()
                .filter(|e| e.body().is_some_and(|b| b.contains("Your code: 4711")))
                .count();
        if codes == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no second code");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    let bob = s.hs.user("bob");
    let bobs = bob.create_room();
    bob.invite(&bobs, s.bridge.bot_user_id().as_str());
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
    let bob = s.hs.user("bob");
    let bobs = bob.create_room();
    bob.invite(&bobs, s.bridge.bot_user_id().as_str());
    bob.say(&bobs, "!login password");
    s.notice(&bobs, "Send your account name").await;
    bob.say(&bobs, "bob-r");
    s.notice(&bobs, "Send your password").await;
    bob.say(&bobs, "swordfish");
    s.notice(&bobs, "Logged in as bob-r").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.original.logins.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's login did not connect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

/// Calls the provisioning API as a login manager would.
async fn provision(
    bridge: &TestBridge,
    method: &str,
    path: &str,
    user: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let query = if user.is_empty() {
        String::new()
    } else {
        format!("?user_id={user}")
    };
    let url = format!("{}/_matrix/provision/v3{path}{query}", bridge.url());
    let http = reqwest::Client::new();
    let mut request = if method == "GET" {
        http.get(url)
    } else {
        http.post(url)
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (
        status,
        answer.json().await.unwrap_or(serde_json::Value::Null),
    )
}

const SECRET: &str = "provisioning-secret-for-tests";

#[tokio::test]
async fn a_login_manager_logs_users_in_over_the_provisioning_api() {
    let s = Scene::with(|b| {
        b.set("provisioning.shared_secret", SECRET).set(
            "bridge.permissions",
            json!({"*": "commands", "localhost": "user", "@eve:localhost": "commands"}),
        )
    })
    .await;
    let b = &s.bridge;
    let alice = "@alice:localhost";
    // No token, a wrong token, a user without the permission.
    let (status, body) = provision(b, "GET", "/login/flows", alice, None, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
    let (status, body) = provision(b, "GET", "/login/flows", alice, Some("wrong"), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );
    let (status, body) = provision(
        b,
        "POST",
        "/login/start/password",
        "@eve:localhost",
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );

    let (status, body) = provision(b, "GET", "/login/flows", alice, Some(SECRET), None).await;
    assert_eq!(status, 200, "{body}");
    let flows: Vec<&str> = body["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(flows, ["password", "code"]);

    // alice and bob log in at the same time, interleaved.
    let (status, a) = provision(
        b,
        "POST",
        "/login/start/password",
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["type"], "user_input");
    let fields: Vec<(&str, &str)> = a["user_input"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [("name", "username"), ("password", "password")]);
    let bob = "@bob:localhost";
    let (_, bb) = provision(b, "POST", "/login/start/password", bob, Some(SECRET), None).await;
    let step = |v: &serde_json::Value, kind: &str| {
        format!(
            "/login/step/{}/{}/{kind}",
            v["login_id"].as_str().unwrap(),
            v["step_id"].as_str().unwrap()
        )
    };
    // A step of the wrong type, and someone else's process.
    let (status, body) = provision(
        b,
        "POST",
        &step(&a, "display_and_wait"),
        alice,
        Some(SECRET),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_STATE"))
    );
    let (status, _) = provision(
        b,
        "POST",
        &step(&a, "user_input"),
        bob,
        Some(SECRET),
        Some(json!({"name": "x", "password": "y"})),
    )
    .await;
    assert_eq!(status, 404);

    let (status, done) = provision(
        b,
        "POST",
        &step(&bb, "user_input"),
        bob,
        Some(SECRET),
        Some(json!({"name": "bob-r", "password": "swordfish"})),
    )
    .await;
    assert_eq!(
        (status, done["type"].as_str()),
        (200, Some("complete")),
        "{done}"
    );
    let (status, done) = provision(
        b,
        "POST",
        &step(&a, "user_input"),
        alice,
        Some(SECRET),
        Some(json!({"name": "alice-r", "password": "hunter2"})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["complete"]["user_login_id"], "alice-r");

    // whoami shows the login, connected.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, me) = provision(b, "GET", "/whoami", alice, Some(SECRET), None).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["bridge_bot"], s.bridge.bot_user_id().as_str());
        assert_eq!(me["command_prefix"], "!");
        assert_eq!(me["login_flows"].as_array().unwrap().len(), 2);
        if me["logins"][0]["state"]["state_event"] == "CONNECTED" {
            assert_eq!(me["logins"][0]["id"], "alice-r");
            assert_eq!(me["logins"].as_array().unwrap().len(), 1, "only alice's");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never connected: {me}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, ids) = provision(b, "GET", "/logins", alice, Some(SECRET), None).await;
    assert_eq!(ids["login_ids"], json!(["alice-r"]));

    // A manager may also use the user's own Matrix access token (checked with the
    // homeserver): it acts for that user only.
    let token = s.alice.access_token();
    let (status, ids) = provision(b, "GET", "/logins", "", Some(&token), None).await;
    assert_eq!(
        (status, &ids["login_ids"]),
        (200, &json!(["alice-r"])),
        "{ids}"
    );
    let bobs_token = s.hs.user("bob").access_token();
    let (status, _) = provision(b, "GET", "/logins", alice, Some(&bobs_token), None).await;
    assert_eq!(status, 403, "bob's token does not act for alice");
    let eve = s.hs.user("eve");
    let revoked = eve.access_token();
    eve.revoke_access_token();
    let (status, body) = provision(b, "GET", "/logins", "", Some(&revoked), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );

    // Logging out over the API ends the login; an unknown one is not found.
    let (status, _) = provision(b, "POST", "/logout/alice-r", alice, Some(SECRET), None).await;
    assert_eq!(status, 200);
    let (_, ids) = provision(b, "GET", "/logins", alice, Some(SECRET), None).await;
    assert_eq!(ids["login_ids"], json!([]));
    let (status, _) = provision(b, "POST", "/logout/bob-r", alice, Some(SECRET), None).await;
    assert_eq!(status, 404, "alice cannot log bob out");
}

#[tokio::test]
async fn without_a_secret_the_provisioning_api_is_off() {
    let s = Scene::new().await;
    let (status, body) = provision(
        &s.bridge,
        "GET",
        "/whoami",
        "@alice:localhost",
        Some("anything"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_UNRECOGNIZED"))
    );
}

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
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let refusals =
            s.hs.messages(&portal)
                .iter()
                .filter(|e| e.body().is_some_and(|b| b.contains("log in first")))
                .count();
        if refusals == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "bob was not told");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.net.received().len(), 3);
}
