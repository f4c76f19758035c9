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
#[derive(Clone)]
struct GroupBridge {
    net: Net,
    /// Logins connected, in order (to see reconnects).
    connects: Arc<Mutex<Vec<String>>>,
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
        vec![LoginFlow::new(
            "password",
            "Password",
            "your account name and password",
        )]
    }

    async fn start_login(
        &self,
        _: &BridgeContext,
        _: &UserId,
        _flow: &str,
    ) -> Result<Box<dyn LoginProcess>, BridgeError> {
        Ok(Box::new(PasswordLogin(self.net.clone())))
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

/// One logged-in account.
struct Account {
    net: Net,
    name: String,
    secret: String,
    connects: Arc<Mutex<Vec<String>>>,
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
}

impl Scene {
    async fn new() -> Self {
        let hs = TestHomeserver::start();
        let net = Net::new();
        net.set_account("alice-r", "hunter2");
        let connects = Arc::default();
        let bridge = TestBridge::start(
            &hs,
            GroupBridge {
                net: net.clone(),
                connects: Arc::clone(&connects),
            },
        )
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
        }
    }

    fn bridge_again(&self) -> GroupBridge {
        GroupBridge {
            net: self.net.clone(),
            connects: self.connects.clone(),
        }
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
        self.alice.say(&self.dm, "!login");
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
async fn a_wrong_password_is_asked_again_and_a_second_login_waits_for_the_first() {
    let s = Scene::new().await;
    s.alice.say(&s.dm, "!login");
    s.notice(&s.dm, "Send your account name").await;
    s.alice.say(&s.dm, "!login");
    s.notice(&s.dm, "a login is already in progress").await;
    s.alice.say(&s.dm, "alice-r");
    s.notice(&s.dm, "Send your password").await;
    s.alice.say(&s.dm, "wrong");
    s.notice(&s.dm, "That did not work").await;
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
