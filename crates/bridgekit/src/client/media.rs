//! Media: uploading as a user, and downloading through authenticated media (v1.11).

use ruma::api::client::authenticated_media::get_content;
use ruma::api::client::media::create_content;
use ruma::{MxcUri, OwnedMxcUri};

use super::{ClientError, Intent};

impl Intent {
    /// Uploads `data` and returns its `mxc://` URI.
    pub async fn upload(
        &self,
        data: Vec<u8>,
        content_type: &str,
        filename: Option<&str>,
    ) -> Result<OwnedMxcUri, ClientError> {
        self.ensure_registered().await?;
        let mut request = create_content::v3::Request::new(data);
        request.content_type = Some(content_type.to_owned());
        request.filename = filename.map(str::to_owned);
        Ok(self.call(request).await?.content_uri)
    }

    /// Downloads the media at `uri`; returns its bytes and content type.
    pub async fn download(&self, uri: &MxcUri) -> Result<(Vec<u8>, Option<String>), ClientError> {
        let (server, media_id) = uri
            .parts()
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let request = get_content::v1::Request::new(media_id.to_owned(), server.to_owned());
        let response = self.call(request).await?;
        Ok((response.file, response.content_type))
    }
}
