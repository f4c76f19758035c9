//! The management room: a room with the bot that is not a portal, where a user types
//! commands (`!help`). `help`, `ping` and `version` are built in; a bridge adds its own with
//! [`Bridge::commands`] and [`Bridge::handle_command`].

use ruma::events::room::message::RoomMessageEventContent;

use super::MatrixOrigin;
use crate::bridge::{Bridge, BridgeError};
use crate::context::BridgeContext;
use crate::logins::Permission;

/// A command a user typed, split into words.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CommandCall {
    /// Where it was typed, and by whom.
    pub origin: MatrixOrigin,
    /// The command word, lowercased (`join` for `!Join #rust`).
    pub name: String,
    /// The words after it.
    pub args: Vec<String>,
    /// The caller's login, when they have one (their first, by ID).
    pub login: Option<crate::store::LoginRecord>,
}

/// How a bridge command is listed by `help`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CommandHelp {
    /// The command word.
    pub name: &'static str,
    /// Its arguments, e.g. `<#channel>`.
    pub usage: &'static str,
    /// What it does, in one line.
    pub help: &'static str,
}

impl CommandHelp {
    /// A command listed as `name usage: help`.
    pub fn new(name: &'static str, usage: &'static str, help: &'static str) -> Self {
        Self { name, usage, help }
    }
}

/// Runs the command in `text` (the message without its prefix) and answers in the room.
pub(super) async fn run<B: Bridge + ?Sized>(
    bridge: &B,
    ctx: &BridgeContext,
    origin: MatrixOrigin,
    text: &str,
) -> Result<(), BridgeError> {
    let mut words = text.split_whitespace().map(str::to_owned);
    let Some(name) = words.next().map(|w| w.to_lowercase()) else {
        return Ok(());
    };
    let room_id = origin.room_id.clone();
    let prefix = &ctx.options().command_prefix;
    let level = ctx.permissions().of(&origin.sender);
    if level < Permission::Commands {
        let refusal: Result<String, BridgeError> = Err(format!(
            "you may not use this bridge's commands (your permission is {level})"
        )
        .into());
        return reply(ctx, &room_id, &name, refusal).await;
    }
    let args: Vec<String> = words.collect();
    if !bridge.login_flows().is_empty()
        && let Some(answer) = crate::double_puppet::commands::run(
            ctx,
            &origin.sender,
            &room_id,
            &origin.event_id,
            &name,
            &args,
        )
        .await
    {
        return reply(ctx, &room_id, &name, answer).await;
    }
    if let Some(answer) =
        crate::logins::commands::run(bridge, ctx, &origin.sender, &room_id, &name, &args).await
    {
        return reply(ctx, &room_id, &name, answer).await;
    }
    let answer = match name.as_str() {
        "help" => {
            let mut lines = vec![
                format!("{prefix}help: this list"),
                format!("{prefix}ping: check that the bridge and the homeserver answer"),
                format!("{prefix}version: the bridge's version"),
            ];
            if !bridge.login_flows().is_empty() {
                lines.extend(crate::logins::commands::help(prefix));
                lines.extend(crate::double_puppet::commands::help(ctx));
            }
            for c in bridge.commands() {
                lines.push(format!("{prefix}{} {}: {}", c.name, c.usage, c.help));
            }
            Ok(lines.join("\n"))
        }
        "ping" => {
            let started = std::time::Instant::now();
            let stats = ctx.backend().stats().await?;
            Ok(format!(
                "pong: store ({}) answered in {} ms, {} events waiting, {} sends queued",
                ctx.store().backend(),
                started.elapsed().as_millis(),
                stats.inbox_depth,
                stats.outbox_depth
            ))
        }
        "version" => Ok(format!(
            "{} on bridgekit {}",
            bridge.version(),
            env!("CARGO_PKG_VERSION")
        )),
        _ => {
            let login = ctx
                .store()
                .logins_of(&origin.sender)
                .await?
                .into_iter()
                .next();
            let call = CommandCall {
                origin,
                name: name.clone(),
                args,
                login,
            };
            bridge.handle_command(ctx, call).await
        }
    };
    reply(ctx, &room_id, &name, answer).await
}

/// Answers command `name` in the room: its text, or its error after the command's name.
pub(crate) async fn reply(
    ctx: &BridgeContext,
    room_id: &ruma::RoomId,
    name: &str,
    answer: Result<String, BridgeError>,
) -> Result<(), BridgeError> {
    let text = match answer {
        Ok(text) => text,
        Err(error) => format!("{}{name}: {error}", ctx.options().command_prefix),
    };
    ctx.bot()
        .send(room_id, &RoomMessageEventContent::notice_plain(text))
        .await?;
    Ok(())
}
