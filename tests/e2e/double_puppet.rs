//! Double puppeting on a real Synapse, with a second appservice registration made by
//! `generate-registration --double-puppet`: a message from alice's own remote account
//! arrives from @alice herself and is not bridged back; with her own access token given by
//! `!login-matrix` and then revoked (she logs that session out), the ghost stands in and she
//! is told.

use std::sync::{Arc, Mutex, OnceLock};

use bridgekit::logins::{
    FieldKind, LoginContext, LoginField, LoginFlow, LoginInput, LoginProcess, LoginStep,
    NetworkClient, NewLogin,
};
use bridgekit::ruma::UserId;
use bridgekit::store::{LoginRecord, LoginState};
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatId, ChatInfo, LoginId, MatrixMessage, MessageId,
    PortalKey, RemoteContent, RemoteEvent, RemoteMessage, RemoteUser, RemoteUserId, Sent,
    async_trait,
};
use reqwest::Method;
use serde_json::Value;

use crate::capabilities::accept_invite;
use crate::harness::{Env, SERIAL, User, wait_for};

/// A network where each user logs in by name and is in one chat; what it received is kept.
#[derive(Clone, Default)]
struct PhoneNetwork {
    ctx: Arc<OnceLock<BridgeContext>>,
    logins: Arc<Mutex<Vec<LoginContext>>>,
    received: Arc<Mutex<Vec<String>>>,
}

fn chat() -> PortalKey {
    PortalKey::new(ChatId::new("chat").unwrap())
}

#[async_trait]
impl Bridge for PhoneNetwork {
    async fn start(&self, ctx: &BridgeContext) -> Result<(), BridgeError> {
        let _ = self.ctx.set(ctx.clone());
        Ok(())
    }

    async fn handle_message(
        &self,
        _: &BridgeContext,
        _: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        Err("log in first".into())
    }

    fn login_flows(&self) -> Vec<LoginFlow> {
        vec![LoginFlow::new("name", "Name", "your account name")]
    }

    async fn start_login(
        &self,
        _: &BridgeContext,
        _: &UserId,
        _: &str,
    ) -> Result<Box<dyn LoginProcess>, BridgeError> {
        Ok(Box::new(ByName))
    }

    async fn load_login(
        &self,
        _: &BridgeContext,
        _: &LoginRecord,
    ) -> Result<Arc<dyn NetworkClient>, BridgeError> {
        Ok(Arc::new(self.clone()))
    }
}

struct ByName;

#[async_trait]
impl LoginProcess for ByName {
    async fn start(&mut self) -> Result<LoginStep, BridgeError> {
        Ok(LoginStep::Input {
            instructions: "Log in.".into(),
            fields: vec![LoginField::new("name", "account name", FieldKind::Username)],
        })
    }

    async fn submit(&mut self, input: LoginInput) -> Result<LoginStep, BridgeError> {
        let name = input["name"].as_str();
        Ok(LoginStep::Complete(NewLogin::new(
            LoginId::new(name)?,
            RemoteUserId::new(name)?,
        )))
    }
}

#[async_trait]
impl NetworkClient for PhoneNetwork {
    async fn connect(&self, login: &LoginContext) -> Result<(), BridgeError> {
        self.logins.lock().unwrap().push(login.clone());
        login.set_state(LoginState::Connected, None).await?;
        let mut info = ChatInfo::default();
        info.name = Some("The chat".into());
        info.invite = vec![login.user_id().to_owned()];
        login
            .remote_event(&chat(), RemoteEvent::NewChat(info))
            .await
    }

    async fn disconnect(&self) {}

    async fn handle_message(
        &self,
        _: &LoginContext,
        m: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        let mut received = self.received.lock().unwrap();
        received.push(m.content.body().to_owned());
        Ok(Sent::message(MessageId::new(format!(
            "n{}",
            received.len()
        ))?))
    }
}

impl PhoneNetwork {
    /// alice's remote account writes `text`, from her phone.
    async fn phone_says(&self, id: &str, text: &str) {
        let login = self.logins.lock().unwrap()[0].clone();
        let sender = RemoteUser::new(RemoteUserId::new("alice-phone").unwrap());
        let message = RemoteMessage::new(
            MessageId::new(id).unwrap(),
            sender,
            RemoteContent::text(text),
        );
        login
            .remote_event(&chat(), RemoteEvent::Message(message))
            .await
            .unwrap();
    }
}

/// Waits for a message saying `text` in `room`; returns the event.
async fn message(alice: &User, room: &str, text: &str) -> Value {
    wait_for(&format!("{text:?} in {room}"), || async {
        alice.timeline(room).await.into_iter().find(|e| {
            e["type"] == "m.room.message"
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains(text))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_her_own_account_arrives_as_her_and_a_revoked_token_falls_back_to_the_ghost()
{
    let _serial = SERIAL.lock().await;
    crate::init();
    let env = Env::synapse_with_double_puppet().await;
    let config = bridgekit::Config::load(env.config_path()).unwrap();
    assert!(
        config.bridge.double_puppet.as_token.is_some(),
        "the printed line configures it"
    );
    let network = PhoneNetwork::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bridgekit::run_until(network.clone(), config, async {
        let _ = stopped.await;
    }));
    wait_for("the bridge to start", || async {
        network.ctx.get().map(drop)
    })
    .await;
    let ctx = network.ctx.get().unwrap().clone();

    let alice = env.user("alice").await;
    let dm = alice.room_with_bot(&env.bot).await;
    alice.send_text(&dm, "!login").await;
    message(&alice, &dm, "Send your account name").await;
    alice.send_text(&dm, "alice-phone").await;
    let done = message(&alice, &dm, "Logged in as alice-phone").await;
    let done = done["content"]["body"].as_str().unwrap();
    assert!(
        done.contains("double puppeting"),
        "turned on at login: {done}"
    );
    let portal = accept_invite(&alice).await;

    // From her phone: sent by @alice herself with the double-puppet registration's token.
    network.phone_says("p1", "sent from my phone").await;
    let event = message(&alice, &portal, "sent from my phone").await;
    assert_eq!(event["sender"], alice.user_id.as_str());
    assert_eq!(event["content"]["fi.mau.double_puppet_source"], "echo");
    // Synapse hands it to the bridge (alice's event in a portal); it must not go out to the
    // network. What she types in Matrix after it does — so once that arrived, the echo,
    // earlier in the same room, was passed over.
    alice.send_text(&portal, "typed in matrix").await;
    wait_for("the network to receive the Matrix message", || async {
        (!network.received.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    assert_eq!(*network.received.lock().unwrap(), ["typed in matrix"]);

    // Her own access token, from another session of hers; the message holding it is
    // redacted by alice herself (the bot has no power to in her room).
    let session = alice.another_session().await;
    let with_token = alice
        .send_text(&dm, &format!("!login-matrix {}", session.token))
        .await;
    message(&alice, &dm, "Double puppeting is on").await;
    let (_, redacted) = alice
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                crate::harness::q(&dm),
                crate::harness::q(&with_token)
            ),
            None,
        )
        .await;
    assert!(
        redacted["content"]
            .as_object()
            .is_some_and(|c| c.is_empty()),
        "the token is redacted: {redacted}"
    );
    network.phone_says("p2", "with my own token").await;
    assert_eq!(
        message(&alice, &portal, "with my own token").await["sender"],
        alice.user_id.as_str()
    );

    // She logs that session out: the homeserver refuses the token, the ghost sends, she is
    // told once in her management room.
    let (status, _) = session
        .call(
            Method::POST,
            "/_matrix/client/v3/logout",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, 200);
    network.phone_says("p3", "after the logout").await;
    let ghost = ctx.ghost_user_id(&RemoteUserId::new("alice-phone").unwrap());
    assert_eq!(
        message(&alice, &portal, "after the logout").await["sender"],
        ghost.as_str()
    );
    message(&alice, &dm, "Double puppeting stopped").await;
    network.phone_says("p4", "still the ghost").await;
    assert_eq!(
        message(&alice, &portal, "still the ghost").await["sender"],
        ghost.as_str()
    );
    assert_eq!(
        *network.received.lock().unwrap(),
        ["typed in matrix"],
        "nothing of hers went back"
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
