//! An IRC bridge built on bridgekit's public API only: IRC channels ↔ portal rooms, IRC
//! users ↔ ghosts, and Matrix users speaking on IRC through one relay connection.
//!
//! | IRC | Matrix |
//! |---|---|
//! | PRIVMSG, NOTICE, ACTION | text, notice, emote from the nick's ghost |
//! | JOIN, PART, QUIT, KICK | the ghost joins, leaves, is kicked |
//! | TOPIC | room topic (both ways) |
//! | NICK | the same ghost, renamed (its displayname follows) |
//!
//! Matrix users appear on IRC as `<name> text` from the relay nick: one connection however
//! many Matrix users there are, nothing to set up per user. With `puppets: true` in the
//! config, a user may also `login` with their own nick ([`login`]): the bridge opens their
//! own connection ([`puppet`]), their messages go out as themselves, and their JOIN/PART
//! follow their Matrix membership. Users without a login keep the relay — unless the
//! framework's relay mode is on (`relay.enabled`): then a portal's relay is a user's login
//! chosen with `!set-relay` (its nick carries the others' messages, formatted by the
//! `relay.*` templates), and without one users with no login are told to log in. The relay's
//! connection alone bridges what IRC says, so a message reaches each portal once however
//! many users are logged in.

pub mod connection;
pub mod login;
pub mod puppet;
pub mod settings;
pub mod translate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bridgekit::logins::{LoginFlow, LoginProcess, NetworkClient};
use bridgekit::ruma::events::room::message::MessageType;
use bridgekit::ruma::{OwnedUserId, UserId};
use bridgekit::store::LoginRecord;
use bridgekit::{
    Bridge, BridgeContext, BridgeError, ChatInfo, CommandCall, CommandHelp, GhostEvent, MatrixEdit,
    MatrixMessage, MatrixRoomChange, MessageId, RemoteEvent, RetryLater, RoomChange, Sent,
    async_trait,
};
use irc_proto::{Command, Message};
use tokio::sync::mpsc;

use connection::IrcHandle;
use puppet::{Puppet, Puppets};
use settings::Settings;
use translate::{Incoming, Kind};

/// The IRC bridge.
#[derive(Default)]
pub struct IrcBridge {
    irc: OnceLock<IrcHandle>,
    settings: OnceLock<Settings>,
    /// The users' own connections, whose lines the relay does not bridge.
    puppets: Puppets,
    /// Matrix displaynames, asked once per user.
    names: Mutex<HashMap<OwnedUserId, String>>,
}

impl IrcBridge {
    fn irc(&self) -> Result<&IrcHandle, BridgeError> {
        self.irc
            .get()
            .ok_or_else(|| "not connected to IRC yet".into())
    }

    /// The relay's connection when it is up: while it reconnects, Matrix messages wait in the
    /// inbox (durably, in order) rather than in this process's memory. Under the framework's
    /// relay mode the bridge's own connection carries nobody's messages: the user is told.
    fn relay_up(&self, ctx: &BridgeContext) -> Result<&IrcHandle, BridgeError> {
        if ctx.options().relay.enabled {
            let prefix = &ctx.options().command_prefix;
            return Err(format!(
                "this room has no relay: log in (`{prefix}login` with the bot) to speak on IRC as yourself, or ask someone logged in to type `{prefix}set-relay` here"
            )
            .into());
        }
        let irc = self.irc()?;
        if !irc.is_up() {
            return Err(RetryLater::new("the IRC relay is reconnecting").into());
        }
        Ok(irc)
    }

    /// The channel a portal room stands for.
    fn channel(portal: Option<&bridgekit::Portal>) -> Option<String> {
        portal.map(|p| p.key.remote_id.to_string())
    }

    async fn name_of(&self, ctx: &BridgeContext, user_id: &UserId) -> String {
        if let Some(name) = self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id)
        {
            return name.clone();
        }
        let name = match ctx.bot().displayname_of(user_id).await {
            Ok(Some(name)) => name,
            _ => user_id.localpart().to_owned(),
        };
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user_id.to_owned(), name.clone());
        name
    }

    /// Bridges `channel`: joins it on IRC and makes sure its portal exists, inviting `invite`.
    /// Those who asked for the bridge moderate its room (they may set its topic, say).
    async fn bridge_channel(
        &self,
        ctx: &BridgeContext,
        channel: &str,
        invite: Vec<OwnedUserId>,
    ) -> Result<(), BridgeError> {
        self.irc()?.join(channel);
        let mut info = ChatInfo::default();
        info.name = Some(channel.to_owned());
        info.power = invite.iter().map(|user| (user.clone(), 50)).collect();
        info.invite = invite;
        let key = translate::portal_key(channel).ok_or("an empty channel name")?;
        ctx.apply_remote_event(&key, RemoteEvent::NewChat(info))
            .await
    }
}

#[async_trait]
impl Bridge for IrcBridge {
    async fn start(&self, ctx: &BridgeContext) -> Result<(), BridgeError> {
        let settings: Settings = ctx.network_config()?;
        if ctx.options().relay.enabled && !settings.puppets {
            return Err("relay.enabled needs network.puppets: true (a portal's relay is a user's own login)".into());
        }
        let _ = self.settings.set(settings.clone());
        let (lines, mut received) = mpsc::unbounded_channel();
        let (status, mut changes) = mpsc::unbounded_channel();
        let options = connection::Options {
            server: settings.server.clone(),
            nick: settings.nick.clone(),
            password: settings.password.clone(),
            nick_taken: connection::NickTaken::Rename,
            reconnect_delay: connection::relay_delay,
        };
        let irc = connection::start(options, lines, status);
        let _ = self.irc.set(irc.clone());
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                if let connection::Status::Refused(why) = change {
                    tracing::error!(%why, "the IRC server refused the relay (check network.password)");
                }
            }
        });
        // Channels bridged in an earlier run, then the configured ones.
        for portal in ctx.store().portals().await? {
            irc.join(&portal.key.remote_id);
        }
        for channel in &settings.channels {
            self.bridge_channel(ctx, channel, settings.invite.clone())
                .await?;
        }
        // IRC → Matrix, one line after another: a rename is applied before the renamed
        // user's next message.
        let ctx = ctx.clone();
        let puppets = self.puppets.clone();
        tokio::spawn(async move {
            while let Some(line) = received.recv().await {
                // A logged-in user's own line came from Matrix: not bridged back.
                if line
                    .source_nickname()
                    .is_some_and(|nick| puppets.contains(nick))
                {
                    continue;
                }
                if let Err(error) = from_irc(&ctx, &irc, &line).await {
                    tracing::warn!(%error, line = %line.to_string().trim_end(), "could not bridge an IRC line");
                }
            }
        });
        Ok(())
    }

    async fn handle_message(
        &self,
        ctx: &BridgeContext,
        msg: MatrixMessage,
    ) -> Result<Sent, BridgeError> {
        let Some(channel) = Self::channel(msg.origin.portal.as_ref()) else {
            return Ok(Sent::pending()); // not a portal: only commands are read there
        };
        // IRC gives messages no IDs; one made from the event still lets edits find their
        // target.
        let id = MessageId::new(format!("matrix:{}", msg.origin.event_id))?;
        let name = self.name_of(ctx, &msg.origin.sender).await;
        let (kind, body) = match &msg.content.msgtype {
            MessageType::Emote(e) => (Kind::Emote, e.body.clone()),
            MessageType::Notice(n) => (Kind::Notice, n.body.clone()),
            MessageType::Text(t) => (Kind::Text, t.body.clone()),
            other => (Kind::Text, format!("sent a file: {}", other.body())),
        };
        let irc = self.relay_up(ctx)?;
        for line in translate::outgoing(&channel, &name, kind, &body) {
            irc.send(line);
        }
        Ok(Sent::message(id))
    }

    /// IRC has no edits: the new text goes out as a correction.
    async fn handle_edit(&self, ctx: &BridgeContext, edit: MatrixEdit) -> Result<(), BridgeError> {
        let Some(channel) = Self::channel(edit.origin.portal.as_ref()) else {
            return Ok(());
        };
        let name = self.name_of(ctx, &edit.origin.sender).await;
        let body = format!("* {}", edit.new_content.msgtype.body());
        let irc = self.relay_up(ctx)?;
        for line in translate::outgoing(&channel, &name, Kind::Text, &body) {
            irc.send(line);
        }
        Ok(())
    }

    async fn handle_room_change(
        &self,
        _ctx: &BridgeContext,
        change: MatrixRoomChange,
    ) -> Result<(), BridgeError> {
        if let (Some(channel), RoomChange::Topic(topic)) =
            (Self::channel(change.origin.portal.as_ref()), &change.change)
        {
            self.irc()?
                .send(Command::TOPIC(channel, Some(topic.replace(['\r', '\n'], " "))).into());
        }
        Ok(())
    }

    fn commands(&self) -> Vec<CommandHelp> {
        vec![CommandHelp::new(
            "join",
            "<#channel>",
            "bridge an IRC channel and invite you to its room",
        )]
    }

    async fn handle_command(
        &self,
        ctx: &BridgeContext,
        call: CommandCall,
    ) -> Result<String, BridgeError> {
        match (call.name.as_str(), call.args.first()) {
            ("join", Some(channel)) if channel.starts_with('#') => {
                let invite = vec![call.origin.sender.clone()];
                self.bridge_channel(ctx, channel, invite).await?;
                Ok(format!("{channel} is bridged; you are invited to its room"))
            }
            ("join", _) => Err("usage: join <#channel>".into()),
            _ => Err(format!(
                "unknown command; {}help lists them",
                ctx.options().command_prefix
            )
            .into()),
        }
    }

    fn version(&self) -> String {
        format!("irc-bridge {}", env!("CARGO_PKG_VERSION"))
    }

    /// Puppet mode offers one flow: your own nick.
    fn login_flows(&self) -> Vec<LoginFlow> {
        match self.settings.get() {
            Some(settings) if settings.puppets => vec![LoginFlow::new(
                "nick",
                "IRC nick",
                "connect to IRC as yourself, with your own nick",
            )],
            _ => Vec::new(),
        }
    }

    async fn start_login(
        &self,
        _ctx: &BridgeContext,
        _user: &UserId,
        _flow: &str,
    ) -> Result<Box<dyn LoginProcess>, BridgeError> {
        let settings = self.settings.get().ok_or("not started yet")?;
        Ok(Box::new(login::NickLogin::new(settings.clone())))
    }

    async fn load_login(
        &self,
        _ctx: &BridgeContext,
        record: &LoginRecord,
    ) -> Result<Arc<dyn NetworkClient>, BridgeError> {
        let settings = self.settings.get().ok_or("not started yet")?;
        let session: login::Session = record
            .metadata_as()?
            .ok_or("the login has no IRC session; log in again")?;
        Ok(Arc::new(Puppet::new(
            settings.clone(),
            session,
            self.puppets.clone(),
        )))
    }
}

/// Bridges one IRC line into Matrix.
async fn from_irc(ctx: &BridgeContext, irc: &IrcHandle, line: &Message) -> Result<(), BridgeError> {
    match translate::incoming(line, &irc.nick()) {
        Incoming::Channel(key, event) => {
            if ctx.store().portal_by_key(&key).await?.is_some() {
                ctx.apply_remote_event(&key, event).await?;
            }
        }
        Incoming::Quit { nick, reason } => {
            let ghost = ctx.ghost_for_remote(&nick).await?;
            for room in ctx.store().joined_rooms(ghost.user_id()).await? {
                if let Some(portal) = ctx.store().portal_by_room(&room).await? {
                    let event = RemoteEvent::MemberLeft {
                        user: bridgekit::RemoteUser::new(nick.clone()),
                        reason: reason.clone(),
                        kicked_by: None,
                    };
                    ctx.apply_remote_event(&portal.key, event).await?;
                }
            }
        }
        Incoming::Renamed { old, new } => {
            let (Some(old_id), Some(new_id)) = (translate::user_id(&old), translate::user_id(&new))
            else {
                return Ok(());
            };
            let user = bridgekit::RemoteUser::new(new_id).with_displayname(&new);
            ctx.apply_ghost_event(GhostEvent::Renamed { old_id, user })
                .await?;
        }
        Incoming::RelayKicked(channel) => irc.send(Command::JOIN(channel, None, None).into()),
        Incoming::Nothing => {}
    }
    Ok(())
}
