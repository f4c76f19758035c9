//! Which rooms are encrypted and who is in them, as the outbox needs it before every send:
//! read from the homeserver once, then kept current by the room's own events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId};

use crate::client::{ClientError, Intent};

/// The caches (cheap to clone).
#[derive(Clone, Default)]
pub(crate) struct Rooms {
    /// `Some(m.room.encryption content)` or `None` (not encrypted).
    settings: Arc<Mutex<HashMap<OwnedRoomId, Option<String>>>>,
    /// The joined and invited users who are not the bridge's own.
    members: Arc<Mutex<HashMap<OwnedRoomId, Arc<Vec<String>>>>>,
}

impl Rooms {
    /// The room's `m.room.encryption` content, `None` when it is not encrypted. Read as
    /// `intent` (a member of the room) the first time.
    pub(crate) async fn settings(
        &self,
        intent: &Intent,
        room_id: &RoomId,
    ) -> Result<Option<String>, ClientError> {
        if let Some(known) = self.known(room_id) {
            return Ok(known);
        }
        let settings = match intent.state(room_id, "m.room.encryption", "").await {
            Ok(content) => Some(content.get().to_owned()),
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => None,
            Err(e) => return Err(e),
        };
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(room_id.to_owned())
            .or_insert(settings.clone());
        Ok(settings)
    }

    /// What is known without asking.
    pub(crate) fn known(&self, room_id: &RoomId) -> Option<Option<String>> {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(room_id)
            .cloned()
    }

    /// The room turned encryption on (an `m.room.encryption` event, or a room the bridge
    /// created encrypted). Encryption is never turned off again.
    pub(crate) fn set_encrypted(&self, room_id: &RoomId, content: String) {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room_id.to_owned(), Some(content));
    }

    /// Someone joined, left or was invited: the member list is read again before the next
    /// send.
    pub(crate) fn members_changed(&self, room_id: &RoomId) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(room_id);
    }

    /// The joined and invited users whose devices get the room's keys (the bridge's own
    /// users have no devices of their own).
    pub(crate) async fn members(
        &self,
        intent: &Intent,
        room_id: &RoomId,
    ) -> Result<Arc<Vec<String>>, ClientError> {
        if let Some(known) = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(room_id)
        {
            return Ok(known.clone());
        }
        let ctx = &intent.ctx;
        let members: Vec<String> = intent
            .members(room_id, &[MembershipState::Join, MembershipState::Invite])
            .await?
            .into_keys()
            .filter(|user| !ctx.is_own_user(user))
            .map(|user| user.to_string())
            .collect();
        let members = Arc::new(members);
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room_id.to_owned(), members.clone());
        Ok(members)
    }
}
