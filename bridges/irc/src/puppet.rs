//! A logged-in user's own IRC connection: their messages go out as themselves, their joins
//! and leaves follow their Matrix membership, and its state is the login's state. What IRC
//! says in the channels is bridged by the relay's connection, once; the relay skips the
//! lines of the users' own connections (see [`Puppets`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use bridgekit::logins::{LoginContext, NetworkClient};
use bridgekit::ruma::events::room::member::MembershipState;
use bridgekit::ruma::events::room::message::MessageType;
use bridgekit::store::{LoginState, PortalKey};
use bridgekit::{
    BridgeError, MatrixEdit, MatrixMembership, MatrixMessage, MatrixRoomChange, MessageId,
    RetryLater, RoomChange, Sent, async_trait,
};
use irc_proto::Command;
use tokio::sync::mpsc;

use crate::connection::{self, IrcHandle, Options, Status};
use crate::login::Session;
use crate::settings::Settings;
use crate::translate::{self, Kind};

/// The nicks of the users' own connections, lowercased: the relay does not bridge their
/// lines (they came from Matrix).
#[derive(Clone, Default)]
pub struct Puppets(Arc<Mutex<HashSet<String>>>);

impl Puppets {
    /// Whether `nick` is one of the users' own connections.
    pub fn contains(&self, nick: &str) -> bool {
        self.lock().contains(&nick.to_lowercase())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One user's connection.
pub struct Puppet {
    settings: Settings,
    session: Session,
    puppets: Puppets,
    handle: OnceLock<IrcHandle>,
}

impl Puppet {
    /// The connection of a login with `session`.
    pub fn new(settings: Settings, session: Session, puppets: Puppets) -> Self {
        Self {
            settings,
            session,
            puppets,
            handle: OnceLock::new(),
        }
    }

    /// The connection, when it is up. While it is down, Matrix events wait in the inbox
    /// (durably, in order) rather than in this process's memory.
    fn irc(&self) -> Result<&IrcHandle, BridgeError> {
        match self.handle.get() {
            Some(handle) if handle.is_up() => Ok(handle),
            _ => Err(RetryLater::new("your IRC connection is down; waiting for it").into()),
        }
    }

    fn channel(portal: Option<&bridgekit::Portal>) -> Option<String> {
        portal.map(|p| p.key.remote_id.to_string())
    }
}

#[async_trait]
impl NetworkClient for Puppet {
    async fn connect(&self, login: &LoginContext) -> Result<(), BridgeError> {
        login.set_state(LoginState::Connecting, None).await?;
        let (incoming, mut lines) = mpsc::unbounded_channel();
        let (status_tx, mut status) = mpsc::unbounded_channel();
        let options = Options {
            server: self.settings.server.clone(),
            nick: self.session.nick.clone(),
            password: self.session.password.clone(),
            nick_taken: connection::NickTaken::Retry,
            reconnect_delay: |attempt| {
                // The framework's pacing: exponential with full jitter, at least 200 ms.
                bridgekit::logins::reconnect_delay(attempt)
                    .max(std::time::Duration::from_millis(200))
            },
        };
        // The nick is the user's from now on: the relay does not bridge its lines, also while
        // this connection reconnects (its QUIT and JOIN are not news).
        self.puppets.lock().insert(self.session.nick.to_lowercase());
        let handle = connection::start(options, incoming, status_tx);
        let _ = self.handle.set(handle.clone());
        // Channels of the portals the login was in, and of those its user joined meanwhile
        // (best effort: a portal the bot cannot read is skipped).
        for link in login.store().login_portals(login.login_id()).await? {
            handle.join(&link.portal.remote_id);
        }
        for portal in login.store().portals().await? {
            match login.bot().joined_members(&portal.room_id).await {
                Ok(members) if members.contains_key(login.user_id()) => {
                    handle.join(&portal.key.remote_id);
                    login.join_portal(&portal.key).await?;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, room = %portal.room_id, "cannot see a portal's members")
                }
            }
        }
        // The relay bridges the channels; this connection's lines only keep it alive.
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        let login = login.clone();
        let puppets = self.puppets.clone();
        let nick = self.session.nick.clone();
        tokio::spawn(async move {
            while let Some(change) = status.recv().await {
                let (state, reason) = match change {
                    Status::Connected(nick) => {
                        puppets.lock().insert(nick.to_lowercase());
                        (LoginState::Connected, None)
                    }
                    Status::Lost(why) => (LoginState::TransientDisconnect, Some(why)),
                    // Stopped for good: the nick is no longer the user's.
                    Status::Refused(why) => {
                        puppets.lock().remove(&nick.to_lowercase());
                        (LoginState::BadCredentials, Some(why))
                    }
                    Status::NickTaken(taken) => {
                        puppets.lock().remove(&nick.to_lowercase());
                        let why = format!("the nick {taken} is taken by someone else");
                        (LoginState::BadCredentials, Some(why))
                    }
                };
                if let Err(error) = login.set_state(state, reason).await {
                    tracing::warn!(%error, "could not record an IRC login's state");
                }
            }
        });
        Ok(())
    }

    async fn disconnect(&self) {
        if let Some(handle) = self.handle.get() {
            handle.quit();
            self.puppets.lock().remove(&handle.nick().to_lowercase());
        }
    }

    async fn handle_message(
        &self,
        login: &LoginContext,
        msg: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        let Some(channel) = Self::channel(msg.origin.portal.as_ref()) else {
            return Ok(Sent::pending());
        };
        let id = MessageId::new(format!("matrix:{}", msg.origin.event_id))?;
        let (kind, body) = match &msg.content.msgtype {
            MessageType::Emote(e) => (Kind::Emote, e.body.clone()),
            MessageType::Notice(n) => (Kind::Notice, n.body.clone()),
            MessageType::Text(t) => (Kind::Text, t.body.clone()),
            other => (Kind::Text, format!("sent a file: {}", other.body())),
        };
        let irc = self.irc()?;
        // Paced per login: an IRC server kills a connection that floods it.
        for line in translate::outgoing_as_self(&channel, kind, &body) {
            login.throttle().await;
            irc.send(line);
        }
        Ok(Sent::message(id))
    }

    /// IRC has no edits: the new text goes out as a correction.
    async fn handle_edit(&self, login: &LoginContext, edit: MatrixEdit) -> Result<(), BridgeError> {
        let Some(channel) = Self::channel(edit.origin.portal.as_ref()) else {
            return Ok(());
        };
        let body = format!("* {}", edit.new_content.msgtype.body());
        let irc = self.irc()?;
        for line in translate::outgoing_as_self(&channel, Kind::Text, &body) {
            login.throttle().await;
            irc.send(line);
        }
        Ok(())
    }

    /// A topic set by the user goes out as theirs.
    async fn handle_room_change(
        &self,
        login: &LoginContext,
        change: MatrixRoomChange,
    ) -> Result<(), BridgeError> {
        if let (Some(channel), RoomChange::Topic(topic)) =
            (Self::channel(change.origin.portal.as_ref()), &change.change)
        {
            login.throttle().await;
            self.irc()?
                .send(Command::TOPIC(channel, Some(topic.replace(['\r', '\n'], " "))).into());
        }
        Ok(())
    }

    /// The user's IRC presence follows their Matrix membership of the portal.
    async fn handle_membership(
        &self,
        login: &LoginContext,
        membership: MatrixMembership,
    ) -> Result<(), BridgeError> {
        let Some(portal) = membership.origin.portal.as_ref() else {
            return Ok(());
        };
        let key: &PortalKey = &portal.key;
        let irc = self.irc()?;
        match membership.membership {
            MembershipState::Join => {
                irc.join(&key.remote_id);
                login.join_portal(key).await?;
            }
            MembershipState::Leave | MembershipState::Ban => {
                irc.part(&key.remote_id);
                login.leave_portal(key).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
