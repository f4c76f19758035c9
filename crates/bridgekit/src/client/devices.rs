//! Devices for bridges that run them (e.g. for encryption): an appservice creates a user's
//! device with `PUT /devices/{deviceId}` (MSC4190, spec v1.17), then acts on it with
//! [`Intent::with_device`].

use ruma::OwnedDeviceId;
use ruma::api::client::device::update_device;

use super::{ClientError, Intent};

impl Intent {
    /// Creates the device `device_id` for this user, or renames it if it exists.
    pub async fn create_device(
        &self,
        device_id: OwnedDeviceId,
        display_name: Option<&str>,
    ) -> Result<(), ClientError> {
        self.ensure_registered().await?;
        let mut request = update_device::v3::Request::new(device_id);
        request.display_name = display_name.map(str::to_owned);
        self.call(request).await?;
        Ok(())
    }
}
