//! What the fake homeserver knows: rooms (timeline, state, members), users and their
//! profiles, aliases and media, and the rules Synapse applies when someone acts in a room.
//! Every answer that refuses something carries Synapse's status, errcode and wording, so the
//! bridge's error handling meets what it would meet in production.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::{Value, json};

use super::event::RoomEvent;

/// A refusal, as a homeserver answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixError {
    /// HTTP status.
    pub status: u16,
    /// The Matrix errcode (`M_FORBIDDEN`, …).
    pub errcode: &'static str,
    /// The human-readable message (Synapse's wording).
    pub error: String,
}

impl MatrixError {
    pub(crate) fn new(status: u16, errcode: &'static str, error: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            error: error.into(),
        }
    }

    pub(crate) fn forbidden(error: impl Into<String>) -> Self {
        Self::new(403, "M_FORBIDDEN", error)
    }

    pub(crate) fn not_found(error: impl Into<String>) -> Self {
        Self::new(404, "M_NOT_FOUND", error)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"errcode": self.errcode, "error": self.error})
    }
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.errcode, self.error)
    }
}

impl std::error::Error for MatrixError {}

/// One room: its timeline, with the current state indexed into it.
#[derive(Default)]
pub(crate) struct Room {
    pub timeline: Vec<RoomEvent>,
    /// (type, state_key) → index in `timeline`.
    pub state: BTreeMap<(String, String), usize>,
}

impl Room {
    pub fn state_content(&self, event_type: &str, state_key: &str) -> Option<&Value> {
        self.state
            .get(&(event_type.to_owned(), state_key.to_owned()))
            .map(|&i| &self.timeline[i].content)
    }

    pub fn membership(&self, user: &str) -> Option<&str> {
        self.state_content("m.room.member", user)?["membership"].as_str()
    }

    pub fn is_joined(&self, user: &str) -> bool {
        self.membership(user) == Some("join")
    }

    /// Users by membership.
    pub fn members(&self) -> BTreeMap<String, String> {
        self.state
            .iter()
            .filter(|((t, _), _)| t == "m.room.member")
            .filter_map(|((_, user), &i)| {
                let m = self.timeline[i].content["membership"].as_str()?;
                Some((user.clone(), m.to_owned()))
            })
            .collect()
    }

    fn power_levels(&self) -> Value {
        self.state_content("m.room.power_levels", "")
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub fn power_of(&self, user: &str) -> i64 {
        let levels = self.power_levels();
        levels["users"][user]
            .as_i64()
            .or(levels["users_default"].as_i64())
            .unwrap_or(0)
    }

    /// The level needed to send `event_type` (a state event when `state`).
    fn needed_for(&self, event_type: &str, state: bool) -> i64 {
        let levels = self.power_levels();
        if levels.is_null() {
            return 0;
        }
        levels["events"][event_type].as_i64().unwrap_or_else(|| {
            if state {
                levels["state_default"].as_i64().unwrap_or(50)
            } else {
                levels["events_default"].as_i64().unwrap_or(0)
            }
        })
    }

    /// The level an action (`invite`, `kick`, `ban`, `redact`) needs; a room without power
    /// levels lets anyone.
    fn action_level(&self, action: &str) -> i64 {
        let levels = self.power_levels();
        if levels.is_null() {
            return 0;
        }
        let default = if action == "invite" { 0 } else { 50 };
        levels[action].as_i64().unwrap_or(default)
    }
}

/// A user's global profile.
#[derive(Clone, Debug, Default)]
pub(crate) struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Whether a user is in the appservice's namespace.
pub(crate) type Interest = Box<dyn Fn(&str) -> bool + Send>;

/// Everything the fake knows, behind one lock.
#[derive(Default)]
pub(crate) struct World {
    pub server_name: String,
    pub rooms: BTreeMap<String, Room>,
    pub aliases: HashMap<String, String>,
    pub registered: HashSet<String>,
    pub profiles: HashMap<String, Profile>,
    pub media: HashMap<String, (Option<String>, Vec<u8>)>,
    /// Events the appservice is interested in, not yet acknowledged by it.
    pub to_push: VecDeque<Value>,
    /// Decides which events the appservice receives (its namespace).
    pub interested: Option<Interest>,
    /// Create a room on first mention instead of answering `M_NOT_FOUND` (for tests that
    /// push events into rooms the fake never saw).
    pub open_rooms: bool,
    pub next_id: u64,
    /// Access tokens of real users (for calls a user's client makes, e.g. `account/whoami`).
    pub user_tokens: HashMap<String, String>,
}

/// Synapse's refusal of an event from a non-member (the "(None)" names its auth check).
fn not_in_room(user: &str, room_id: &str) -> MatrixError {
    MatrixError::forbidden(format!("User {user} not in room {room_id} (None)"))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl World {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn room(&mut self, room_id: &str) -> Result<&mut Room, MatrixError> {
        if self.open_rooms && !self.rooms.contains_key(room_id) {
            self.rooms.insert(room_id.to_owned(), Room::default());
            let event = RoomEvent {
                event_id: format!("$open{}", self.next_id()),
                room_id: room_id.to_owned(),
                sender: format!("@nobody:{}", self.server_name),
                event_type: "m.room.join_rules".into(),
                state_key: Some(String::new()),
                content: json!({"join_rule": "public"}),
                redacts: None,
                origin_server_ts: now_ms(),
                redacted: false,
            };
            let room = self.rooms.get_mut(room_id).expect("just inserted");
            room.timeline.push(event);
            room.state
                .insert(("m.room.join_rules".into(), String::new()), 0);
        }
        self.rooms
            .get_mut(room_id)
            .ok_or_else(|| MatrixError::not_found(format!("Unknown room {room_id}")))
    }

    /// Appends an event without any check, and queues it for the appservice if it is
    /// interested.
    pub fn append(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
        ts: Option<u64>,
    ) -> Result<RoomEvent, MatrixError> {
        let event_id = format!("$ev{}_{}", self.next_id(), room_id.len());
        let event = RoomEvent {
            event_id,
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            redacts: None,
            content,
            origin_server_ts: ts.unwrap_or_else(now_ms),
            redacted: false,
        };
        let room = self.room(room_id)?;
        room.timeline.push(event.clone());
        if let Some(key) = state_key {
            let index = room.timeline.len() - 1;
            room.state
                .insert((event_type.to_owned(), key.to_owned()), index);
        }
        self.queue_for_appservice(&event);
        Ok(event)
    }

    /// Queues `event` for the appservice when it concerns one of its users: it sent it, it is
    /// about it (a member event), or one of them is in the room.
    pub fn queue_for_appservice(&mut self, event: &RoomEvent) {
        let Some(interested) = &self.interested else {
            return;
        };
        let concerned = interested(&event.sender)
            || event.state_key.as_deref().is_some_and(interested)
            || self.rooms.get(&event.room_id).is_some_and(|room| {
                room.members()
                    .iter()
                    .any(|(user, m)| (m == "join" || m == "invite") && interested(user))
            });
        if concerned {
            self.to_push.push_back(event.to_json());
        }
    }

    /// A message-like event from `sender`, who must be in the room with the power to send it.
    pub fn send_message(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        content: Value,
        ts: Option<u64>,
    ) -> Result<RoomEvent, MatrixError> {
        self.check_may_send(room_id, sender, event_type, false)?;
        self.append(room_id, sender, event_type, None, content, ts)
    }

    /// A state event other than membership, from a joined member with the power for it.
    pub fn send_state(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
        ts: Option<u64>,
    ) -> Result<RoomEvent, MatrixError> {
        self.check_may_send(room_id, sender, event_type, true)?;
        self.append(room_id, sender, event_type, Some(state_key), content, ts)
    }

    /// Synapse's two checks on a send: the sender is joined, and has the level `event_type`
    /// needs (a state event when `state`).
    fn check_may_send(
        &mut self,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state: bool,
    ) -> Result<(), MatrixError> {
        let room = self.room(room_id)?;
        if !room.is_joined(sender) {
            return Err(not_in_room(sender, room_id));
        }
        let (have, need) = (room.power_of(sender), room.needed_for(event_type, state));
        if have < need {
            return Err(MatrixError::forbidden(format!(
                "You don't have permission to post that to the room. user_level ({have}) < send_level ({need})"
            )));
        }
        Ok(())
    }

    /// `sender` redacts `target`: allowed for its own events or with the redact level.
    pub fn redact(
        &mut self,
        room_id: &str,
        sender: &str,
        target: &str,
        reason: Option<&str>,
        ts: Option<u64>,
    ) -> Result<RoomEvent, MatrixError> {
        let room = self.room(room_id)?;
        if !room.is_joined(sender) {
            return Err(not_in_room(sender, room_id));
        }
        let own = room
            .timeline
            .iter()
            .any(|e| e.event_id == target && e.sender == sender);
        if !own && room.power_of(sender) < room.action_level("redact") {
            return Err(MatrixError::forbidden(
                "You don't have permission to redact events",
            ));
        }
        if let Some(e) = room.timeline.iter_mut().find(|e| e.event_id == target) {
            e.redacted = true;
            e.content = json!({});
        }
        let content = reason.map_or(json!({}), |r| json!({"reason": r}));
        let mut event = self.append(room_id, sender, "m.room.redaction", None, content, ts)?;
        event.redacts = Some(target.to_owned());
        let room = self.rooms.get_mut(room_id).expect("appended above");
        room.timeline.last_mut().expect("appended above").redacts = Some(target.to_owned());
        // The queued copy carries `redacts` too.
        if let Some(last) = self.to_push.back_mut()
            && last["event_id"] == event.event_id.as_str()
        {
            *last = event.to_json();
        }
        Ok(event)
    }

    /// The member event content for `user` becoming `membership`, with its profile.
    fn member_content(&self, user: &str, membership: &str, reason: Option<&str>) -> Value {
        let mut content = json!({"membership": membership});
        if membership == "join" || membership == "invite" {
            let profile = self.profiles.get(user).cloned().unwrap_or_default();
            if let Some(name) = profile.displayname {
                content["displayname"] = name.into();
            }
            if let Some(url) = profile.avatar_url {
                content["avatar_url"] = url.into();
            }
        }
        if let Some(reason) = reason {
            content["reason"] = reason.into();
        }
        content
    }

    /// `user` joins: allowed when invited, already joined, or the room is public.
    pub fn join(&mut self, room_id: &str, user: &str) -> Result<(), MatrixError> {
        let room = self.room(room_id)?;
        match room.membership(user) {
            Some("join") => return Ok(()),
            Some("ban") => {
                return Err(MatrixError::forbidden("You are banned from this room"));
            }
            Some("invite") => {}
            _ => {
                let public = room
                    .state_content("m.room.join_rules", "")
                    .is_some_and(|c| c["join_rule"] == "public");
                if !public {
                    return Err(MatrixError::forbidden("You are not invited to this room."));
                }
            }
        }
        let content = self.member_content(user, "join", None);
        self.append(room_id, user, "m.room.member", Some(user), content, None)?;
        Ok(())
    }

    /// `sender` changes `target`'s membership (invite, leave/kick, ban, unban).
    pub fn set_membership(
        &mut self,
        room_id: &str,
        sender: &str,
        target: &str,
        membership: &str,
        reason: Option<&str>,
    ) -> Result<(), MatrixError> {
        let room = self.room(room_id)?;
        let current = room.membership(target).map(str::to_owned);
        let own = sender == target;
        if !own && !room.is_joined(sender) {
            return Err(not_in_room(sender, room_id));
        }
        let needed = match (membership, own) {
            ("invite", _) => room.action_level("invite"),
            ("leave", true) => 0,
            ("leave", false) if current.as_deref() == Some("ban") => room.action_level("ban"),
            ("leave", false) => room.action_level("kick"),
            ("ban", _) => room.action_level("ban"),
            _ => 0,
        };
        if room.power_of(sender) < needed {
            return Err(MatrixError::forbidden(format!(
                "You don't have permission to {membership} users. user_level ({}) < {needed}",
                room.power_of(sender)
            )));
        }
        match (membership, current.as_deref()) {
            ("invite", Some("join")) => {
                return Err(MatrixError::forbidden(format!(
                    "{target} is already in the room."
                )));
            }
            ("invite", Some("ban")) => {
                return Err(MatrixError::forbidden(format!(
                    "{target} is banned from the room"
                )));
            }
            ("leave", None | Some("leave")) if own => {
                return Err(MatrixError::forbidden(format!(
                    "User {target} not in room {room_id}"
                )));
            }
            _ => {}
        }
        let content = self.member_content(target, membership, reason);
        self.append(
            room_id,
            sender,
            "m.room.member",
            Some(target),
            content,
            None,
        )?;
        Ok(())
    }

    /// Creates a room as `creator` from a `createRoom` body; returns its ID.
    pub fn create_room(&mut self, creator: &str, body: &Value) -> Result<String, MatrixError> {
        let room_id = format!("!room{}:{}", self.next_id(), self.server_name);
        if let Some(local) = body["room_alias_name"].as_str() {
            let alias = format!("#{local}:{}", self.server_name);
            if self.aliases.contains_key(&alias) {
                return Err(MatrixError::new(
                    400,
                    "M_ROOM_IN_USE",
                    "Room alias already taken",
                ));
            }
            self.aliases.insert(alias, room_id.clone());
        }
        self.rooms.insert(room_id.clone(), Room::default());
        let id = room_id.as_str();
        self.append(
            id,
            creator,
            "m.room.create",
            Some(""),
            json!({"creator": creator, "room_version": "11"}),
            None,
        )?;
        let content = self.member_content(creator, "join", None);
        self.append(id, creator, "m.room.member", Some(creator), content, None)?;
        let mut power = json!({
            "users": {creator: 100}, "users_default": 0, "events_default": 0,
            "state_default": 50, "invite": 0, "kick": 50, "ban": 50, "redact": 50,
            "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.topic": 50, "m.room.avatar": 50},
        });
        if let Some(users) = body["power_level_content_override"]["users"].as_object() {
            for (user, level) in users {
                power["users"][user] = level.clone();
            }
        }
        self.append(id, creator, "m.room.power_levels", Some(""), power, None)?;
        let public = body["preset"] == "public_chat";
        let rule = if public { "public" } else { "invite" };
        self.append(
            id,
            creator,
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": rule}),
            None,
        )?;
        for state in body["initial_state"].as_array().into_iter().flatten() {
            let kind = state["type"].as_str().unwrap_or_default();
            let key = state["state_key"].as_str().unwrap_or_default();
            self.append(id, creator, kind, Some(key), state["content"].clone(), None)?;
        }
        if let Some(name) = body["name"].as_str() {
            self.append(
                id,
                creator,
                "m.room.name",
                Some(""),
                json!({"name": name}),
                None,
            )?;
        }
        if let Some(topic) = body["topic"].as_str() {
            self.append(
                id,
                creator,
                "m.room.topic",
                Some(""),
                json!({"topic": topic}),
                None,
            )?;
        }
        for user in body["invite"].as_array().into_iter().flatten() {
            let user = user.as_str().unwrap_or_default();
            let mut content = self.member_content(user, "invite", None);
            if body["is_direct"] == true {
                content["is_direct"] = true.into();
            }
            self.append(id, creator, "m.room.member", Some(user), content, None)?;
        }
        Ok(room_id)
    }

    /// Sets a profile field and, as Synapse does, updates the user's member events in every
    /// room they are in.
    pub fn set_profile(&mut self, user: &str, field: &str, value: Option<String>) {
        let profile = self.profiles.entry(user.to_owned()).or_default();
        match field {
            "displayname" => profile.displayname = value,
            _ => profile.avatar_url = value,
        }
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.is_joined(user))
            .map(|(id, _)| id.clone())
            .collect();
        for room_id in rooms {
            let content = self.member_content(user, "join", None);
            let _ = self.append(&room_id, user, "m.room.member", Some(user), content, None);
        }
    }
}
