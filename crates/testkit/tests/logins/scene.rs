//! The scene every login test plays in: a bridge whose users each log into their own account
//! on a scripted network (by password, or by confirming a code), the homeserver, and alice
//! with a management room the bot moderates.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridgekit::logins::{
    Contact, CookieField, CookieSource, FieldKind, LoginContext, LoginField, LoginFlow, LoginInput,
    LoginProcess, LoginStep, NetworkClient, NewLogin, OpenedChat,
};
use bridgekit::ruma::UserId;
use bridgekit::store::{LoginRecord, LoginState, PortalKey};
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, ChatInfo, LoginId, MatrixMessage, MessageId,
    RemoteEvent, RemoteUser, RemoteUserId, RetryLater, Sent, async_trait,
};
use bridgekit_testkit::{MatrixUser, ScriptedNetwork, TestBridge, TestHomeserver};
use serde_json::json;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// What the network received: (account, text).
pub(crate) type Net = ScriptedNetwork<(String, String)>;

/// A bridge whose users each log into their own account on a scripted network, where every
/// account is in one group chat, `group`.
#[derive(Clone, Default)]
pub(crate) struct GroupBridge {
    pub(crate) net: Net,
    /// Logins connected, in order (to see reconnects).
    pub(crate) connects: Arc<Mutex<Vec<String>>>,
    /// The connected logins' contexts, for the test to deliver remote events through.
    pub(crate) logins: Arc<Mutex<Vec<LoginContext>>>,
    /// Confirms a code login, as the user's phone would.
    pub(crate) confirm: Arc<tokio::sync::Notify>,
    /// Set when a login process was cancelled.
    pub(crate) cancelled: Arc<std::sync::atomic::AtomicBool>,
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
            LoginFlow::new("cookies", "Cookies", "the session of your browser"),
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
            "cookies" => Box::new(CookieLogin(self.net.clone())),
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

pub(crate) struct PasswordLogin(Net);

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

/// Takes alice's session cookie from a browser.
pub(crate) struct CookieLogin(Net);

#[async_trait]
impl LoginProcess for CookieLogin {
    async fn start(&mut self) -> Result<LoginStep, BridgeError> {
        Ok(LoginStep::Cookies {
            instructions: "Log in to the group network's website.".into(),
            url: "https://group.example/login".into(),
            user_agent: None,
            fields: vec![CookieField::new(
                "session",
                CookieSource::Cookie {
                    domain: "group.example".into(),
                },
            )],
        })
    }

    async fn submit(&mut self, input: LoginInput) -> Result<LoginStep, BridgeError> {
        self.0.check_login("alice-r", &input["session"])?;
        let login = NewLogin::new(LoginId::new("alice-r")?, RemoteUserId::new("alice-r")?)
            .with_metadata(&json!({"secret": input["session"]}))?;
        Ok(LoginStep::Complete(login))
    }
}

/// Shows a code and waits for the user's phone to confirm it.
pub(crate) struct CodeLogin(GroupBridge);

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
pub(crate) struct Account {
    net: Net,
    name: String,
    secret: String,
    connects: Arc<Mutex<Vec<String>>>,
    logins: Arc<Mutex<Vec<LoginContext>>>,
}

pub(crate) fn group() -> PortalKey {
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

    async fn resolve_identifier(
        &self,
        _login: &LoginContext,
        identifier: &str,
    ) -> Result<Option<Contact>, BridgeError> {
        Ok(self.contact(identifier))
    }

    async fn contacts(&self, _login: &LoginContext) -> Result<Vec<Contact>, BridgeError> {
        Ok(ACCOUNTS
            .iter()
            .filter(|a| **a != self.name)
            .filter_map(|a| self.contact(a))
            .collect())
    }

    async fn create_dm(
        &self,
        _login: &LoginContext,
        contact: &Contact,
    ) -> Result<OpenedChat, BridgeError> {
        let mut info = ChatInfo::default();
        info.members = vec![contact.user.clone()];
        info.is_direct = true;
        Ok(OpenedChat::new(
            self.dm_with(contact.user.id.as_str()),
            info,
        ))
    }
}

/// The accounts the group network has.
const ACCOUNTS: [&str; 2] = ["alice-r", "bob-r"];

impl Account {
    /// The account `name`, as a contact of this one.
    fn contact(&self, name: &str) -> Option<Contact> {
        if !ACCOUNTS.contains(&name) {
            return None;
        }
        let user =
            RemoteUser::new(RemoteUserId::new(name).ok()?).with_displayname(name.to_uppercase());
        Some(
            Contact::new(user)
                .with_identifier(format!("group:{name}"))
                .with_direct_chat(self.dm_with(name)),
        )
    }

    /// The direct chat of this account with `other`.
    fn dm_with(&self, other: &str) -> PortalKey {
        let mut pair = [self.name.as_str(), other];
        pair.sort();
        PortalKey::new(ChatId::new(format!("dm:{}+{}", pair[0], pair[1])).unwrap())
    }
}

/// The homeserver, the bridge, and alice with a management room the bot moderates (so it
/// may redact the secrets she types).
pub(crate) struct Scene {
    pub(crate) hs: Arc<TestHomeserver>,
    pub(crate) bridge: TestBridge,
    pub(crate) net: Net,
    pub(crate) connects: Arc<Mutex<Vec<String>>>,
    pub(crate) alice: MatrixUser,
    pub(crate) dm: String,
    /// The bridge value first started (its shared parts).
    pub(crate) original: GroupBridge,
}

impl Scene {
    pub(crate) async fn new() -> Self {
        Self::with(|b| b).await
    }

    /// A scene whose bridge config `configure` adds to.
    pub(crate) async fn with(
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
    pub(crate) fn bridge_again(&self) -> GroupBridge {
        self.original.logins.lock().unwrap().clear();
        self.original.clone()
    }

    /// Waits for a notice from the bot in `room` containing `text`.
    pub(crate) async fn notice(&self, room: &str, text: &str) -> bridgekit_testkit::RoomEvent {
        let bot = self.bridge.bot_user_id().to_string();
        self.hs
            .wait_for(room, &format!("a notice saying {text:?}"), WAIT, |e| {
                e.sender == bot && e.body().is_some_and(|b| b.contains(text))
            })
            .await
    }

    pub(crate) async fn log_in(&self) {
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
    pub(crate) async fn join_group(&self) -> String {
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

/// Waits (up to `WAIT`) until `done` holds; panics naming `what`.
pub(crate) async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Scene {
    /// Whether the store holds no login at all.
    pub(crate) async fn no_logins(&self) -> bool {
        self.bridge
            .ctx()
            .store()
            .all_logins()
            .await
            .unwrap()
            .is_empty()
    }

    /// How many messages in `room` contain `text`.
    pub(crate) fn count(&self, room: &str, text: &str) -> usize {
        self.hs
            .messages(room)
            .iter()
            .filter(|e| e.body().is_some_and(|b| b.contains(text)))
            .count()
    }

    /// bob, in a room of his own with the bot; logged in to `bob-r` when `log_in`.
    pub(crate) async fn bob(&self, log_in: bool) -> (MatrixUser, String) {
        let bob = self.hs.user("bob");
        let room = bob.create_room();
        bob.invite(&room, self.bridge.bot_user_id().as_str());
        if log_in {
            bob.say(&room, "!login password");
            self.notice(&room, "Send your account name").await;
            bob.say(&room, "bob-r");
            self.notice(&room, "Send your password").await;
            bob.say(&room, "swordfish");
            self.notice(&room, "Logged in as bob-r").await;
        }
        (bob, room)
    }
}
