//! Membership: joining (by ID, or by alias through servers), inviting, leaving, kicking,
//! banning. Joins are remembered in the store; a join the homeserver refuses becomes a bot
//! invite and a second join.

use ruma::api::client::membership::{
    ban_user, invite_user, join_room_by_id, join_room_by_id_or_alias, kick_user, leave_room,
    unban_user,
};
use ruma::{OwnedRoomId, OwnedServerName, RoomId, RoomOrAliasId, UserId};

use super::{ClientError, Intent};

impl Intent {
    /// Joins `room_id` (by invite or because the room is public).
    pub async fn join(&self, room_id: &RoomId) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let request = join_room_by_id::v3::Request::new(room_id.to_owned());
        match self.call(request.clone()).await {
            // The store says registered, the homeserver disagrees (e.g. its database was reset).
            Err(e) if e.is_unregistered_user() => {
                self.register().await?;
                self.call(request).await?;
            }
            other => {
                other?;
            }
        }
        self.ctx
            .store()
            .set_joined(self.user_id(), room_id, true)
            .await?;
        Ok(())
    }

    /// Joins a room by ID or alias, through the given servers; returns the room ID.
    pub async fn join_via(
        &self,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
    ) -> Result<OwnedRoomId, ClientError> {
        self.ensure_registered().await?;
        let mut request = join_room_by_id_or_alias::v3::Request::new(room.to_owned());
        request.via = via.to_vec();
        let room_id = self.call(request).await?.room_id;
        self.ctx
            .store()
            .set_joined(self.user_id(), &room_id, true)
            .await?;
        Ok(room_id)
    }

    /// Makes sure the user is in `room_id`: joins, and if that is refused, has the bot invite
    /// it and joins again.
    pub async fn ensure_joined(&self, room_id: &RoomId) -> Result<(), ClientError> {
        if self.ctx.store().is_joined(self.user_id(), room_id).await? {
            return Ok(());
        }
        match self.join(room_id).await {
            Err(e) if e.status() == Some(403) && !self.is_bot() => {
                tracing::debug!(user_id = %self.user_id(), %room_id, "join refused; inviting through the bot");
                self.ctx.bot().invite(room_id, self.user_id()).await?;
                self.join(room_id).await
            }
            other => other,
        }
    }

    /// Invites `user_id` to `room_id`.
    pub async fn invite(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), ClientError> {
        let recipient = invite_user::v3::InviteUserId::new(user_id.to_owned());
        self.call(invite_user::v3::Request::new(
            room_id.to_owned(),
            recipient.into(),
        ))
        .await?;
        Ok(())
    }

    /// Leaves `room_id`.
    pub async fn leave(&self, room_id: &RoomId, reason: Option<&str>) -> Result<(), ClientError> {
        let mut request = leave_room::v3::Request::new(room_id.to_owned());
        request.reason = reason.map(str::to_owned);
        self.call(request).await?;
        self.ctx
            .store()
            .set_joined(self.user_id(), room_id, false)
            .await?;
        Ok(())
    }

    /// Kicks `user_id` from `room_id`.
    pub async fn kick(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut request = kick_user::v3::Request::new(room_id.to_owned(), user_id.to_owned());
        request.reason = reason.map(str::to_owned);
        self.call(request).await?;
        self.ctx.store().set_joined(user_id, room_id, false).await?;
        Ok(())
    }

    /// Bans `user_id` from `room_id`.
    pub async fn ban(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut request = ban_user::v3::Request::new(room_id.to_owned(), user_id.to_owned());
        request.reason = reason.map(str::to_owned);
        self.call(request).await?;
        self.ctx.store().set_joined(user_id, room_id, false).await?;
        Ok(())
    }

    /// Lifts a ban of `user_id` in `room_id`.
    pub async fn unban(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut request = unban_user::v3::Request::new(room_id.to_owned(), user_id.to_owned());
        request.reason = reason.map(str::to_owned);
        self.call(request).await?;
        Ok(())
    }
}
