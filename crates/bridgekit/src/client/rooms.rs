//! Rooms: creating portals, the appservice room directory, reading state, members and
//! history.

use std::collections::BTreeMap;

use ruma::api::Direction;
use ruma::api::client::{
    appservice::set_room_visibility,
    membership::{get_member_events, joined_members},
    message::get_message_events,
    room::{Visibility, create_room},
    state::{get_state_event_for_key, get_state_events},
};
use ruma::events::room::member::MembershipState;
use ruma::events::{AnyInitialStateEvent, AnyStateEvent, AnyTimelineEvent};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UInt};
use serde_json::value::RawValue;

use super::{ClientError, Intent};

/// A room to create: `CreateRoom::new().name("Chat").invite(user).power(ghost, 50)`.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CreateRoom {
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.topic`.
    pub topic: Option<String>,
    /// Alias localpart; must be in the appservice's alias namespace.
    pub alias_localpart: Option<String>,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// A direct chat (`is_direct`).
    pub direct: bool,
    /// Listed in the public directory, joinable by anyone.
    pub public: bool,
    /// Extra initial state (e.g. `m.bridge`, avatar, encryption).
    pub initial_state: Vec<Raw<AnyInitialStateEvent>>,
    /// Power levels for users, e.g. ghosts that must post state. The creator is left out: in
    /// room version 12 creators have unlimited power and must not be listed.
    pub power: BTreeMap<OwnedUserId, i64>,
}

impl CreateRoom {
    /// A private room with no name.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
    /// Gives the room an alias in the appservice's namespace.
    pub fn alias(mut self, localpart: impl Into<String>) -> Self {
        self.alias_localpart = Some(localpart.into());
        self
    }
    /// Invites a user.
    pub fn invite(mut self, user_id: OwnedUserId) -> Self {
        self.invite.push(user_id);
        self
    }
    /// Marks the room as a direct chat.
    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }
    /// Makes the room public.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }
    /// Adds an initial state event.
    pub fn state(mut self, event: Raw<AnyInitialStateEvent>) -> Self {
        self.initial_state.push(event);
        self
    }
    /// Gives `user_id` a power level.
    pub fn power(mut self, user_id: OwnedUserId, level: i64) -> Self {
        self.power.insert(user_id, level);
        self
    }
}

/// One page of room history.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MessagesPage {
    /// Events, in the order of the requested direction.
    pub chunk: Vec<Raw<AnyTimelineEvent>>,
    /// Token for the next page; `None` at the end of history.
    pub end: Option<String>,
}

impl Intent {
    /// Creates a room as this user and returns its ID.
    pub async fn create_room(&self, room: CreateRoom) -> Result<OwnedRoomId, ClientError> {
        self.ensure_registered().await?;
        let mut request = create_room::v3::Request::new();
        request.name = room.name;
        request.topic = room.topic;
        request.room_alias_name = room.alias_localpart;
        request.invite = room.invite;
        request.is_direct = room.direct;
        request.initial_state = room.initial_state;
        if room.public {
            request.visibility = Visibility::Public;
            request.preset = Some(create_room::v3::RoomPreset::PublicChat);
        }
        let users: BTreeMap<&str, i64> = room
            .power
            .iter()
            .filter(|(u, _)| **u != *self.user_id())
            .map(|(u, l)| (u.as_str(), *l))
            .collect();
        if !users.is_empty() {
            let json =
                serde_json::to_string(&serde_json::json!({ "users": users })).expect("serializes");
            request.power_level_content_override = Some(Raw::from_json(
                RawValue::from_string(json).expect("valid JSON"),
            ));
        }
        let room_id = self.call(request).await?.room_id;
        self.ctx
            .store()
            .set_joined(self.user_id(), &room_id, true)
            .await?;
        Ok(room_id)
    }

    /// Lists or unlists a room in the room directory of the appservice network `network_id`.
    pub async fn set_directory_visibility(
        &self,
        network_id: &str,
        room_id: &RoomId,
        public: bool,
    ) -> Result<(), ClientError> {
        let visibility = if public {
            Visibility::Public
        } else {
            Visibility::Private
        };
        self.call(set_room_visibility::v3::Request::new(
            network_id.to_owned(),
            room_id.to_owned(),
            visibility,
        ))
        .await?;
        Ok(())
    }

    /// The content of one state event, as raw JSON (`M_NOT_FOUND` if unset).
    pub async fn state(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<Box<RawValue>, ClientError> {
        let request = get_state_event_for_key::v3::Request::new(
            room_id.to_owned(),
            event_type.into(),
            state_key.to_owned(),
        );
        Ok(self.call(request).await?.event_or_content)
    }

    /// The room's whole current state.
    pub async fn room_state(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<Raw<AnyStateEvent>>, ClientError> {
        Ok(self
            .call(get_state_events::v3::Request::new(room_id.to_owned()))
            .await?
            .room_state)
    }

    /// The joined members, with their displaynames.
    pub async fn joined_members(
        &self,
        room_id: &RoomId,
    ) -> Result<BTreeMap<OwnedUserId, Option<String>>, ClientError> {
        let joined = self
            .call(joined_members::v3::Request::new(room_id.to_owned()))
            .await?
            .joined;
        Ok(joined
            .into_iter()
            .map(|(user, member)| (user, member.display_name))
            .collect())
    }

    /// The room's members whose membership is one of `memberships` (every member when
    /// empty), from its current state (`GET /rooms/{roomId}/members`): `joined_members`
    /// misses invited users, whom an encrypted room's keys must reach too.
    pub async fn members(
        &self,
        room_id: &RoomId,
        memberships: &[MembershipState],
    ) -> Result<BTreeMap<OwnedUserId, MembershipState>, ClientError> {
        let mut request = get_member_events::v3::Request::new(room_id.to_owned());
        if let [only] = memberships {
            request.membership = Some(only.clone());
        }
        let chunk = self.call(request).await?.chunk;
        let mut members = BTreeMap::new();
        for event in chunk {
            let event: serde_json::Value = event
                .deserialize_as()
                .map_err(|e| ClientError::Response(e.to_string()))?;
            let (Some(user), Some(membership)) = (
                event["state_key"]
                    .as_str()
                    .and_then(|u| ruma::UserId::parse(u).ok()),
                event["content"]["membership"].as_str(),
            ) else {
                continue; // a malformed member event names nobody
            };
            let membership = MembershipState::from(membership);
            if memberships.is_empty() || memberships.contains(&membership) {
                members.insert(user, membership);
            }
        }
        Ok(members)
    }

    /// One page of history (`/messages`), from `from` (or the start in that direction).
    pub async fn messages(
        &self,
        room_id: &RoomId,
        from: Option<&str>,
        dir: Direction,
        limit: u32,
    ) -> Result<MessagesPage, ClientError> {
        let mut request = get_message_events::v3::Request::new(room_id.to_owned(), dir);
        request.from = from.map(str::to_owned);
        request.limit = UInt::from(limit);
        let response = self.call(request).await?;
        Ok(MessagesPage {
            chunk: response.chunk,
            end: response.end,
        })
    }
}
