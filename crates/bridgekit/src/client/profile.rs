//! Profiles: global and per-room displayname and avatar, each set only when it changed.

use ruma::api::client::profile::{get_display_name, set_avatar_url, set_display_name};
use ruma::{OwnedMxcUri, RoomId, UserId};
use serde_json::{Value, json};

use super::{ClientError, Intent, Outgoing};

impl Intent {
    /// Sets the user's global displayname, unless it is already the one last set.
    pub async fn set_displayname(&self, displayname: &str) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let store = self.ctx.store();
        if store.ghost(self.user_id()).await?.displayname.as_deref() == Some(displayname) {
            return Ok(());
        }
        // The generic profile-field endpoint is stable only since v1.16; this one works everywhere.
        #[allow(deprecated)]
        let request = set_display_name::v3::Request::new(
            self.user_id().to_owned(),
            Some(displayname.to_owned()),
        );
        self.call(request).await?;
        store
            .update_ghost(self.user_id(), &|r| {
                r.displayname = Some(displayname.to_owned())
            })
            .await?;
        Ok(())
    }

    /// Sets the user's global avatar, unless it is already the one last set.
    pub async fn set_avatar(&self, avatar_url: &OwnedMxcUri) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let store = self.ctx.store();
        if store.ghost(self.user_id()).await?.avatar_url.as_deref() == Some(avatar_url.as_str()) {
            return Ok(());
        }
        #[allow(deprecated)]
        let request =
            set_avatar_url::v3::Request::new(self.user_id().to_owned(), Some(avatar_url.clone()));
        self.call(request).await?;
        store
            .update_ghost(self.user_id(), &|r| {
                r.avatar_url = Some(avatar_url.to_string())
            })
            .await?;
        Ok(())
    }

    /// The global displayname of any user, as this user sees it (`None` if unset).
    pub async fn displayname_of(&self, user_id: &UserId) -> Result<Option<String>, ClientError> {
        #[allow(deprecated)]
        let request = get_display_name::v3::Request::new(user_id.to_owned());
        Ok(self.call(request).await?.displayname)
    }

    /// Sets the user's displayname and avatar in one room only (its `m.room.member` event),
    /// unless they are already what was last set there. `None` leaves a field as it is.
    pub async fn set_room_profile(
        &self,
        room_id: &RoomId,
        displayname: Option<&str>,
        avatar_url: Option<&OwnedMxcUri>,
    ) -> Result<(), ClientError> {
        let store = self.ctx.store();
        let last = store.room_profile(self.user_id(), room_id).await?;
        let wanted = (
            displayname.map(str::to_owned),
            avatar_url.map(|a| a.to_string()),
        );
        let changed = wanted
            .0
            .as_ref()
            .is_some_and(|d| last.0.as_ref() != Some(d))
            || wanted
                .1
                .as_ref()
                .is_some_and(|a| last.1.as_ref() != Some(a));
        if !changed {
            return Ok(());
        }
        self.ensure_joined(room_id).await?;
        let mut content: Value = match self
            .state(room_id, "m.room.member", self.user_id().as_str())
            .await
        {
            Ok(raw) => serde_json::from_str(raw.get()).unwrap_or_else(|_| json!({})),
            Err(_) => json!({}),
        };
        content["membership"] = "join".into();
        if let Some(d) = &wanted.0 {
            content["displayname"] = d.as_str().into();
        }
        if let Some(a) = &wanted.1 {
            content["avatar_url"] = a.as_str().into();
        }
        let raw = serde_json::value::to_raw_value(&content)
            .map_err(|e| ClientError::Request(e.to_string()))?;
        self.submit(Outgoing::raw_state(
            room_id,
            "m.room.member",
            self.user_id().as_str(),
            raw,
        ))
        .await?;
        let merged = (wanted.0.or(last.0), wanted.1.or(last.1));
        store
            .set_room_profile(self.user_id(), room_id, &merged)
            .await?;
        Ok(())
    }
}
