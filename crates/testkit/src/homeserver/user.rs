//! A real Matrix user of the fake homeserver, driven by the test: what a person does in a
//! client (create a room, invite the bot, say something, edit, react, redact, leave). Each
//! action is checked by the same rules as the appservice's calls and panics with the
//! homeserver's refusal, so a test reads as a script; `try_send` returns the refusal instead.

use std::sync::Arc;

use serde_json::{Value, json};

use super::TestHomeserver;
use super::world::MatrixError;

/// Acts as one real user. Cheap to clone.
#[derive(Clone)]
pub struct MatrixUser {
    hs: Arc<TestHomeserver>,
    user_id: String,
}

impl std::fmt::Debug for MatrixUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.user_id)
    }
}

impl MatrixUser {
    pub(super) fn new(hs: Arc<TestHomeserver>, localpart: &str) -> Self {
        let user_id = format!("@{localpart}:{}", hs.server_name());
        hs.inner()
            .world
            .lock()
            .unwrap()
            .profiles
            .entry(user_id.clone())
            .or_default();
        Self { hs, user_id }
    }

    /// An access token of this user's (as their client holds), for calls made with it —
    /// `account/whoami` answers with this user. The same token each time until revoked.
    pub fn access_token(&self) -> String {
        let token = format!(
            "syt_{}_test",
            self.user_id.trim_start_matches('@').replace(':', "_")
        );
        self.hs
            .inner()
            .world
            .lock()
            .unwrap()
            .user_tokens
            .insert(token.clone(), self.user_id.clone());
        token
    }

    /// Revokes this user's access token (as a logout on their client does).
    pub fn revoke_access_token(&self) {
        let mut world = self.hs.inner().world.lock().unwrap();
        world.user_tokens.retain(|_, user| *user != self.user_id);
    }

    /// The user's ID.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    fn act<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut super::world::World) -> Result<T, MatrixError>,
    ) -> T {
        let result = f(&mut self.hs.inner().world.lock().unwrap());
        self.hs.inner().pushed.notify_one();
        result.unwrap_or_else(|e| panic!("{} could not {what}: {e}", self.user_id))
    }

    /// Sets the user's displayname (its member events follow).
    pub fn set_displayname(&self, name: &str) {
        self.act("set a displayname", |w| {
            w.set_profile(&self.user_id, "displayname", Some(name.to_owned()));
            Ok(())
        })
    }

    /// Creates a private room (invite only) and returns its ID.
    pub fn create_room(&self) -> String {
        self.act("create a room", |w| {
            w.create_room(&self.user_id, &json!({}))
        })
    }

    /// Creates a public room (anyone may join) and returns its ID.
    pub fn create_public_room(&self) -> String {
        self.act("create a room", |w| {
            w.create_room(&self.user_id, &json!({"preset": "public_chat"}))
        })
    }

    /// Creates a private room with `user_id` invited as to a direct chat.
    pub fn create_direct_room(&self, user_id: &str) -> String {
        self.act("create a direct room", |w| {
            w.create_room(
                &self.user_id,
                &json!({"invite": [user_id], "is_direct": true}),
            )
        })
    }

    /// Invites `user_id` (the bridge's bot, say) to `room_id`.
    pub fn invite(&self, room_id: &str, user_id: &str) {
        self.act("invite", |w| {
            w.set_membership(room_id, &self.user_id, user_id, "invite", None)
        })
    }

    /// Joins `room_id` (invited, or a public room).
    pub fn join(&self, room_id: &str) {
        self.act("join", |w| w.join(room_id, &self.user_id))
    }

    /// Leaves `room_id`.
    pub fn leave(&self, room_id: &str) {
        self.act("leave", |w| {
            w.set_membership(room_id, &self.user_id, &self.user_id, "leave", None)
        })
    }

    /// Kicks `user_id` from `room_id`.
    pub fn kick(&self, room_id: &str, user_id: &str, reason: Option<&str>) {
        self.act("kick", |w| {
            w.set_membership(room_id, &self.user_id, user_id, "leave", reason)
        })
    }

    /// Sends any message-like event; the refusal, if the homeserver refuses.
    pub fn try_send(
        &self,
        room_id: &str,
        event_type: &str,
        content: Value,
    ) -> Result<String, MatrixError> {
        let result = self.hs.inner().world.lock().unwrap().send_message(
            room_id,
            &self.user_id,
            event_type,
            content,
            None,
        );
        self.hs.inner().pushed.notify_one();
        result.map(|e| e.event_id)
    }

    /// Sends any message-like event and returns its ID.
    pub fn send(&self, room_id: &str, event_type: &str, content: Value) -> String {
        self.try_send(room_id, event_type, content)
            .unwrap_or_else(|e| panic!("{} could not send into {room_id}: {e}", self.user_id))
    }

    /// Says `text` (an `m.text` message).
    pub fn say(&self, room_id: &str, text: &str) -> String {
        self.send(
            room_id,
            "m.room.message",
            json!({"msgtype": "m.text", "body": text}),
        )
    }

    /// Says `text` with an HTML rendering.
    pub fn say_html(&self, room_id: &str, text: &str, html: &str) -> String {
        self.send(
            room_id,
            "m.room.message",
            json!({"msgtype": "m.text", "body": text, "format": "org.matrix.custom.html", "formatted_body": html}),
        )
    }

    /// Acts `text` (`/me text`, an `m.emote`).
    pub fn emote(&self, room_id: &str, text: &str) -> String {
        self.send(
            room_id,
            "m.room.message",
            json!({"msgtype": "m.emote", "body": text}),
        )
    }

    /// Sends a notice.
    pub fn notice(&self, room_id: &str, text: &str) -> String {
        self.send(
            room_id,
            "m.room.message",
            json!({"msgtype": "m.notice", "body": text}),
        )
    }

    /// Edits the message `target` to say `text`.
    pub fn edit(&self, room_id: &str, target: &str, text: &str) -> String {
        self.send(
            room_id,
            "m.room.message",
            json!({
                "msgtype": "m.text", "body": format!("* {text}"),
                "m.new_content": {"msgtype": "m.text", "body": text},
                "m.relates_to": {"rel_type": "m.replace", "event_id": target},
            }),
        )
    }

    /// Reacts to `target` with `key`.
    pub fn react(&self, room_id: &str, target: &str, key: &str) -> String {
        self.send(
            room_id,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}),
        )
    }

    /// Redacts `target`.
    pub fn redact(&self, room_id: &str, target: &str, reason: Option<&str>) -> String {
        self.act("redact", |w| {
            w.redact(room_id, &self.user_id, target, reason, None)
        })
        .event_id
    }

    /// Sets a state event (`m.room.topic`, …).
    pub fn set_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> String {
        self.act("set room state", |w| {
            w.send_state(room_id, &self.user_id, event_type, state_key, content, None)
        })
        .event_id
    }

    /// Sets the room's topic.
    pub fn set_topic(&self, room_id: &str, topic: &str) -> String {
        self.set_state(room_id, "m.room.topic", "", json!({"topic": topic}))
    }
}
