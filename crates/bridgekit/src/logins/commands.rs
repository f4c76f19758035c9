//! Logging in from the management room: `login [flow]` walks the user through the bridge's
//! steps in the chat (each field asked in turn; secrets redacted once read), `cancel` stops
//! it, `logout`, `relogin` and `list-logins` manage what is there. One login conversation per
//! user at a time; it times out after `bridge.login_timeout_secs`.

use std::sync::Arc;

use ruma::events::room::message::RoomMessageEventContent;
use ruma::{EventId, OwnedRoomId, RoomId, UserId};

use super::client::LoginContext;
use super::flow::{Display, LoginField, LoginInput, LoginProcess, LoginStep, NewLogin};
use super::permissions::Permission;
use crate::bridge::{Bridge, BridgeError};
use crate::context::BridgeContext;
use crate::ids::LoginId;
use crate::store::{LoginRecord, UserRecord};

/// A login in progress: the bridge's process, where it is being walked through, and what the
/// user answered so far.
pub(crate) struct Conversation {
    process: Box<dyn LoginProcess>,
    room: OwnedRoomId,
    /// Fields of the current input step not yet answered, in order.
    pending: Vec<LoginField>,
    answers: LoginInput,
}

/// A user's conversation, with its serial number (a timer or a waiter only acts on its own).
#[derive(Clone)]
pub(crate) struct Slot {
    serial: u64,
    conversation: Arc<tokio::sync::Mutex<Conversation>>,
    /// When the login times out.
    deadline: tokio::time::Instant,
    /// Woken by `cancel`, to stop a display step's wait.
    cancelled: Arc<tokio::sync::Notify>,
    /// Where the conversation is held (checked without waiting for the conversation).
    room: OwnedRoomId,
    /// Set while a display step waits for the network: plain messages are no answers then.
    waiting: Arc<std::sync::atomic::AtomicBool>,
    /// For `relogin`: the login the new one must be.
    expected: Option<LoginId>,
}

/// The built-in login commands, for `help`.
pub(crate) fn help(prefix: &str) -> Vec<String> {
    vec![
        format!("{prefix}login [flow]: log in to your remote account"),
        format!("{prefix}cancel: stop a login in progress"),
        format!("{prefix}list-logins: your logins and their state"),
        format!("{prefix}logout <login>: log out and forget a login"),
        format!("{prefix}relogin <login>: log in again to a login that stopped working"),
        format!(
            "{prefix}set-relay / {prefix}unset-relay (in a portal, when relay mode is on): carry the messages of users without a login there through your login"
        ),
    ]
}

/// Runs a built-in login command; `None` when `name` is not one.
pub(crate) async fn run<B: Bridge + ?Sized>(
    bridge: &B,
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    name: &str,
    args: &[String],
) -> Option<Result<String, BridgeError>> {
    if bridge.login_flows().is_empty() {
        return None;
    }
    let answer = match name {
        "login" => login(bridge, ctx, sender, room, args.first().map(String::as_str)).await,
        "relogin" => match args.first() {
            Some(id) => relogin(bridge, ctx, sender, room, id).await,
            None => Err("usage: relogin <login>".into()),
        },
        "cancel" => cancel(ctx, sender).await,
        "list-logins" => list(ctx, sender).await,
        "logout" => match args.first() {
            Some(id) => logout(ctx, sender, id).await,
            None => Err("usage: logout <login> (list-logins shows them)".into()),
        },
        _ => return None,
    };
    Some(answer)
}

pub(crate) fn may_log_in(ctx: &BridgeContext, user: &UserId) -> Result<(), BridgeError> {
    let level = ctx.permissions().of(user);
    if level < Permission::User {
        return Err(format!(
            "you may not log in to this bridge (your permission is {level}; an operator grants `user` in bridge.permissions)"
        )
        .into());
    }
    Ok(())
}

async fn login<B: Bridge + ?Sized>(
    bridge: &B,
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    flow: Option<&str>,
) -> Result<String, BridgeError> {
    may_log_in(ctx, sender)?;
    let flows = bridge.login_flows();
    let flow = match (flow, flows.as_slice()) {
        (Some(id), _) => flows
            .iter()
            .find(|f| f.id == id)
            .ok_or_else(|| format!("no login flow {id:?}; {}", list_flows(ctx, &flows)))?,
        (None, [only]) => only,
        (None, _) => return Ok(list_flows(ctx, &flows)),
    };
    refuse_second_login(ctx, sender)?;
    refuse_shared_rooms(ctx, room).await?;
    let mut process = bridge.start_login(ctx, sender, &flow.id).await?;
    let step = process.start().await?;
    begin(ctx, sender, room, process, step, None).await
}

/// One login conversation per user at a time.
fn refuse_second_login(ctx: &BridgeContext, sender: &UserId) -> Result<(), BridgeError> {
    if ctx
        .logins()
        .conversations
        .lock()
        .unwrap()
        .contains_key(sender)
    {
        return Err(format!(
            "a login is already in progress; finish it or `{}cancel` it",
            ctx.options().command_prefix
        )
        .into());
    }
    Ok(())
}

/// Secrets are typed into the room: only the user and the bot may be in it.
async fn refuse_shared_rooms(ctx: &BridgeContext, room: &RoomId) -> Result<(), BridgeError> {
    let members = ctx.bot().joined_members(room).await?;
    if members.len() > 2 {
        return Err(
            "log in from a room with only you and the bot: others here would see what you type"
                .into(),
        );
    }
    Ok(())
}

/// Whether a login in this room waits for `sender`'s answer (so a message starting with the
/// command prefix is an answer too, not a command — a password may start with `!`).
pub(crate) fn awaits_answer(ctx: &BridgeContext, sender: &UserId, room: &RoomId) -> bool {
    ctx.logins()
        .conversations
        .lock()
        .unwrap()
        .get(sender)
        .is_some_and(|slot| {
            slot.room == room && !slot.waiting.load(std::sync::atomic::Ordering::SeqCst)
        })
}

async fn relogin<B: Bridge + ?Sized>(
    bridge: &B,
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    id: &str,
) -> Result<String, BridgeError> {
    may_log_in(ctx, sender)?;
    let login = own_login(ctx, sender, id).await?;
    if login.user_id != sender {
        return Err("only its own user can log in to a login again".into());
    }
    refuse_second_login(ctx, sender)?;
    refuse_shared_rooms(ctx, room).await?;
    let flows = bridge.login_flows();
    let flow = flows.first().ok_or("this bridge has no logins")?;
    tracing::info!(login = %login.id, user = %sender, "logging in again");
    let mut process = bridge.start_login(ctx, sender, &flow.id).await?;
    let step = process.start().await?;
    begin(ctx, sender, room, process, step, Some(login.id)).await
}

fn list_flows(ctx: &BridgeContext, flows: &[super::flow::LoginFlow]) -> String {
    let prefix = &ctx.options().command_prefix;
    let mut lines = vec!["Log in with one of:".to_owned()];
    for f in flows {
        lines.push(format!(
            "{prefix}login {}: {} — {}",
            f.id, f.name, f.description
        ));
    }
    lines.join("\n")
}

/// Registers a new conversation and carries out its first step.
async fn begin(
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    process: Box<dyn LoginProcess>,
    step: LoginStep,
    expected: Option<LoginId>,
) -> Result<String, BridgeError> {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let conversation = Arc::new(tokio::sync::Mutex::new(Conversation {
        process,
        room: room.to_owned(),
        pending: Vec::new(),
        answers: LoginInput::new(),
    }));
    let slot = Slot {
        serial,
        conversation: conversation.clone(),
        deadline: tokio::time::Instant::now() + ctx.options().login_timeout,
        cancelled: Arc::default(),
        room: room.to_owned(),
        waiting: Arc::default(),
        expected,
    };
    ctx.logins()
        .conversations
        .lock()
        .unwrap()
        .insert(sender.to_owned(), slot.clone());
    spawn_timeout(ctx.clone(), sender.to_owned(), slot.clone());
    let mut guard = conversation.lock().await;
    advance(ctx, sender, &mut guard, &slot, step).await
}

/// Carries out `step`; returns what to tell the user.
async fn advance(
    ctx: &BridgeContext,
    sender: &UserId,
    conversation: &mut Conversation,
    slot: &Slot,
    step: LoginStep,
) -> Result<String, BridgeError> {
    match step {
        LoginStep::Input {
            instructions,
            fields,
        } => {
            if fields.is_empty() {
                end(ctx, sender);
                return Err("the bridge asked for nothing; the login is stopped".into());
            }
            conversation.pending = fields;
            conversation.answers.clear();
            Ok(join_lines(
                &instructions,
                &ask(&conversation.pending[0], ctx),
            ))
        }
        LoginStep::Cookies {
            instructions,
            url,
            fields,
            ..
        } => {
            if fields.is_empty() {
                end(ctx, sender);
                return Err("the bridge asked for nothing; the login is stopped".into());
            }
            // In a chat, each value is pasted like a secret field.
            conversation.pending = fields
                .iter()
                .map(|f| LoginField::new(&f.name, cookie_name(f), super::FieldKind::Token))
                .collect();
            conversation.answers.clear();
            let open = format!(
                "Log in at {url} in a browser, then copy these from its developer tools (or use a login manager):"
            );
            Ok(join_lines(
                &join_lines(&instructions, &open),
                &ask(&conversation.pending[0], ctx),
            ))
        }
        LoginStep::Display {
            instructions,
            display,
        } => {
            slot.waiting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            spawn_wait(ctx.clone(), sender.to_owned(), slot.clone());
            let shown = match display {
                Display::Code(code) => format!("Your code: {code}"),
                Display::Qr(data) => format!("Scan this QR code's data: {data}"),
                Display::Nothing => String::new(),
            };
            Ok(join_lines(&instructions, &shown))
        }
        LoginStep::Complete(new) => {
            end(ctx, sender);
            if let Some(expected) = &slot.expected
                && *expected != new.id
            {
                conversation.process.cancel().await;
                return Err(format!(
                    "that is the account {}, not the login {expected} you asked to renew",
                    new.id
                )
                .into());
            }
            complete(ctx, sender, Some(&conversation.room), new).await
        }
    }
}

/// How a chat names a cookie step's value.
fn cookie_name(field: &super::CookieField) -> String {
    use super::CookieSource;
    let name = &field.name;
    match &field.source {
        CookieSource::Cookie { domain } => format!("cookie {name} (of {domain})"),
        CookieSource::LocalStorage => format!("local storage value {name}"),
        CookieSource::RequestHeader { .. } => format!("request header {name}"),
        CookieSource::RequestBody { .. } => format!("request body value {name}"),
    }
}

fn join_lines(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}\n{b}"),
    }
}

fn ask(field: &LoginField, ctx: &BridgeContext) -> String {
    let secret = if field.kind.is_secret() {
        " (it is redacted from this room once read)"
    } else {
        ""
    };
    format!(
        "Send your {}{secret}, or `{}cancel`.",
        field.name,
        ctx.options().command_prefix
    )
}

/// A message from `sender` in `room` that is not a command: an answer, if a login there
/// waits for one. `None` when no login conversation takes it.
pub(crate) async fn answer(
    ctx: &BridgeContext,
    sender: &UserId,
    room: &RoomId,
    event_id: &EventId,
    text: &str,
) -> Option<Result<String, BridgeError>> {
    let slot = ctx
        .logins()
        .conversations
        .lock()
        .unwrap()
        .get(sender)
        .cloned()?;
    if slot.room != room || slot.waiting.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    // Held only while an answer is being submitted, never while the network is awaited.
    let mut conversation = slot.conversation.lock().await;
    if conversation.pending.is_empty() || !is_current(ctx, sender, slot.serial) {
        return None;
    }
    let field = conversation.pending.remove(0);
    if field.kind.is_secret()
        && let Err(error) = crate::double_puppet::redact_secret(ctx, sender, room, event_id).await
    {
        tracing::warn!(%error, "could not redact a login secret");
        let _ = say(
            ctx,
            room,
            "I could not redact your message: please redact it yourself.",
        )
        .await;
    }
    conversation
        .answers
        .insert(field.id, text.trim().to_owned());
    if let Some(next) = conversation.pending.first() {
        return Some(Ok(ask(next, ctx)));
    }
    let input = std::mem::take(&mut conversation.answers);
    let outcome = match conversation.process.submit(input).await {
        Ok(step) => advance(ctx, sender, &mut conversation, &slot, step).await,
        Err(error) => {
            end(ctx, sender);
            Err(format!("login failed: {error}").into())
        }
    };
    Some(outcome)
}

/// Waits for the network after a display step, then carries on — or stops at `cancel` or
/// when the login times out.
fn spawn_wait(ctx: BridgeContext, sender: ruma::OwnedUserId, slot: Slot) {
    let weak = ctx.downgrade();
    drop(ctx);
    tokio::spawn(async move {
        let mut conversation = slot.conversation.lock().await;
        let room = conversation.room.clone();
        let step = tokio::select! {
            step = conversation.process.wait() => Some(step),
            _ = slot.cancelled.notified() => {
                conversation.process.cancel().await;
                return; // `cancel` answered the user
            }
            _ = tokio::time::sleep_until(slot.deadline) => None,
        };
        slot.waiting
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let Some(ctx) = weak.upgrade().map(BridgeContext::from_shared) else {
            return; // the bridge stopped meanwhile
        };
        if !is_current(&ctx, &sender, slot.serial) {
            return;
        }
        let text = match step {
            Some(Ok(step)) => match advance(&ctx, &sender, &mut conversation, &slot, step).await {
                Ok(text) => text,
                Err(error) => format!("login failed: {error}"),
            },
            Some(Err(error)) => {
                end(&ctx, &sender);
                format!("login failed: {error}")
            }
            None => {
                conversation.process.cancel().await;
                end(&ctx, &sender);
                "the login timed out".to_owned()
            }
        };
        let _ = say(&ctx, &room, &text).await;
    });
}

/// Cancels `sender`'s conversation `slot` if it is still open at its deadline (a display
/// step's waiter times out by itself).
fn spawn_timeout(ctx: BridgeContext, sender: ruma::OwnedUserId, slot: Slot) {
    let weak = ctx.downgrade();
    drop(ctx);
    tokio::spawn(async move {
        tokio::time::sleep_until(slot.deadline).await;
        let Some(ctx) = weak.upgrade().map(BridgeContext::from_shared) else {
            return; // the bridge stopped meanwhile
        };
        if !is_current(&ctx, &sender, slot.serial) {
            return;
        }
        if slot.waiting.load(std::sync::atomic::Ordering::SeqCst) {
            return; // its waiter times out by itself
        }
        // An answer being submitted holds it for a moment: the timeout comes right after.
        let mut conversation = slot.conversation.lock().await;
        if !is_current(&ctx, &sender, slot.serial) {
            return;
        }
        end(&ctx, &sender);
        conversation.process.cancel().await;
        let _ = say(&ctx, &conversation.room, "the login timed out").await;
    });
}

fn is_current(ctx: &BridgeContext, sender: &UserId, serial: u64) -> bool {
    let conversations = ctx.logins().conversations.lock().unwrap();
    conversations
        .get(sender)
        .is_some_and(|s| s.serial == serial)
}

/// Forgets `sender`'s conversation; returns it.
fn end(ctx: &BridgeContext, sender: &UserId) -> Option<Slot> {
    ctx.logins().conversations.lock().unwrap().remove(sender)
}

async fn cancel(ctx: &BridgeContext, sender: &UserId) -> Result<String, BridgeError> {
    let Some(slot) = end(ctx, sender) else {
        return Err("no login is in progress".into());
    };
    // A display step's waiter holds the conversation: it is told, and cancels the process.
    match slot.conversation.try_lock() {
        Ok(mut conversation) => conversation.process.cancel().await,
        Err(_) => slot.cancelled.notify_one(),
    }
    Ok("the login is cancelled".into())
}

/// Stores the new login, starts its client and says who the user is now logged in as. A
/// login from a room makes that room the user's management room.
pub(crate) async fn complete(
    ctx: &BridgeContext,
    sender: &UserId,
    room: Option<&RoomId>,
    new: NewLogin,
) -> Result<String, BridgeError> {
    let store = ctx.store();
    let mut user = store
        .user(sender)
        .await?
        .unwrap_or_else(|| UserRecord::new(sender.to_owned()));
    if let Some(room) = room {
        user.management_room = Some(room.to_owned());
    }
    store.put_user(&user).await?;
    let mut record = LoginRecord::new(new.id.clone(), sender.to_owned(), new.remote_id.clone());
    record.remote_name = new.remote_name.clone();
    record.metadata = new.metadata;
    // The record first: it refuses another user's login, before anything of theirs is
    // touched. Then a login again (relogin) replaces the running client.
    store.put_login(&record).await.map_err(|e| match e {
        crate::StoreError::Conflict(_) => {
            BridgeError::from("this remote account is logged in by another Matrix user")
        }
        other => other.into(),
    })?;
    if let Some(old) = ctx.logins().remove(&new.id) {
        old.disconnect().await;
    }
    let bridge = ctx.logins().bridge()?;
    super::registry::start_login(&*bridge, ctx, &record).await?;
    let name = new.remote_name.unwrap_or_else(|| new.remote_id.to_string());
    let mut answer = format!("Logged in as {name} (login {}).", new.id);
    if let Some(puppeting) = crate::double_puppet::on_login(ctx, sender).await {
        answer.push(' ');
        answer.push_str(&puppeting);
    }
    Ok(answer)
}

pub(crate) async fn own_login(
    ctx: &BridgeContext,
    sender: &UserId,
    id: &str,
) -> Result<LoginRecord, BridgeError> {
    let id = LoginId::new(id)?;
    match ctx.store().login(&id).await? {
        Some(login)
            if login.user_id == sender || ctx.permissions().of(sender) >= Permission::Admin =>
        {
            Ok(login)
        }
        _ => Err(format!("you have no login {id} (list-logins shows yours)").into()),
    }
}

async fn list(ctx: &BridgeContext, sender: &UserId) -> Result<String, BridgeError> {
    let logins = ctx.store().logins_of(sender).await?;
    if logins.is_empty() {
        return Ok(format!(
            "You have no logins; `{}login` makes one.",
            ctx.options().command_prefix
        ));
    }
    let lines: Vec<String> = logins
        .iter()
        .map(|l| {
            let name = l.remote_name.as_deref().unwrap_or(l.remote_id.as_str());
            let reason = l
                .state_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("{}: {name}, {}{reason}", l.id, l.state)
        })
        .collect();
    Ok(lines.join("\n"))
}

pub(crate) async fn logout(
    ctx: &BridgeContext,
    sender: &UserId,
    id: &str,
) -> Result<String, BridgeError> {
    let record = own_login(ctx, sender, id).await?;
    if let Some(client) = ctx.logins().remove(&record.id) {
        let login = LoginContext::new(ctx.clone(), record.id.clone(), record.user_id.clone());
        client.logout(&login).await;
    }
    ctx.puppets().forget_login(&record.remote_id);
    let portals = ctx.store().login_portals(&record.id).await?;
    ctx.store().delete_login(&record.id).await?;
    if ctx.options().kick_on_logout {
        for link in portals {
            if let Some(portal) = ctx.store().portal_by_key(&link.portal).await? {
                let _ = ctx
                    .bot()
                    .kick(
                        &portal.room_id,
                        &record.user_id,
                        Some("logged out of the bridge"),
                    )
                    .await;
            }
        }
    }
    tracing::info!(login = %record.id, user = %record.user_id, "logged out");
    Ok(format!("Logged out of {}.", record.id))
}

async fn say(ctx: &BridgeContext, room: &RoomId, text: &str) -> Result<(), BridgeError> {
    ctx.bot()
        .send(room, &RoomMessageEventContent::notice_plain(text))
        .await?;
    Ok(())
}

/// Tells `user` something in their management room (where they last logged in); logged
/// when they have none.
pub(crate) async fn tell_user(
    ctx: &BridgeContext,
    user: &UserId,
    text: &str,
) -> Result<(), BridgeError> {
    match ctx
        .store()
        .user(user)
        .await?
        .and_then(|u| u.management_room)
    {
        Some(room) => say(ctx, &room, text).await,
        None => {
            tracing::warn!(%user, text, "no management room to tell the user");
            Ok(())
        }
    }
}
