//! The machine's requests as plain HTTP: built here with ruma 0.16, sent by the bridge over its
//! own client, and the responses read back here. Every request is made as the appservice for
//! the bot's device (`?user_id=&device_id=`, spec v1.17 device masquerading).

use std::borrow::Cow;

use async_trait::async_trait;
use matrix_sdk_crypto::types::requests::{
    AnyIncomingResponse, AnyOutgoingRequest, UploadSigningKeysRequest,
};
use ruma::api::auth_scheme::SendAccessToken;
use ruma::api::client::keys::{
    claim_keys, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};
use ruma::api::client::message::send_message_event;
use ruma::api::client::to_device::send_event_to_device;
use ruma::api::{
    AppserviceUserIdentity, IncomingResponse, MatrixVersion, OutgoingRequestAppserviceExt,
    SupportedVersions,
};
use ruma::{OwnedDeviceId, OwnedUserId};

use crate::CryptoError;

/// Sends the machine's HTTP requests to the homeserver.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends `request` (absolute URL, headers and body set) and answers the homeserver's
    /// response whatever its status, or an error when none came.
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, crate::BoxError>;
}

/// Where and as whom requests are made.
pub(crate) struct Addressing {
    pub homeserver: String,
    pub as_token: String,
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    versions: SupportedVersions,
}

impl Addressing {
    pub(crate) fn new(
        homeserver: String,
        as_token: String,
        user_id: OwnedUserId,
        device_id: OwnedDeviceId,
    ) -> Self {
        let versions = SupportedVersions {
            versions: [MatrixVersion::V1_1, MatrixVersion::V1_11].into(),
            features: Default::default(),
        };
        Self {
            homeserver: homeserver.trim_end_matches('/').to_owned(),
            as_token,
            user_id,
            device_id,
            versions,
        }
    }

    fn identity(&self) -> AppserviceUserIdentity<'_> {
        let mut identity = AppserviceUserIdentity::new(&self.user_id);
        identity.device_id = Some(&self.device_id);
        identity
    }
}

fn http_error(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Request(e.to_string())
}

macro_rules! build {
    ($req:expr, $a:expr, $path:expr) => {
        $req.try_into_http_request_with_identity::<Vec<u8>>(
            &$a.homeserver,
            SendAccessToken::Always(&$a.as_token),
            $a.identity(),
            $path,
        )
        .map_err(http_error)
    };
}

/// The HTTP form of one of the machine's requests.
pub(crate) fn to_http(
    request: &AnyOutgoingRequest,
    a: &Addressing,
) -> Result<http::Request<Vec<u8>>, CryptoError> {
    let versions = Cow::Borrowed(&a.versions);
    match request {
        AnyOutgoingRequest::KeysUpload(r) => build!(r.clone(), a, versions),
        AnyOutgoingRequest::KeysQuery(r) => {
            let mut q = get_keys::v3::Request::new();
            q.device_keys = r.device_keys.clone();
            q.timeout = r.timeout;
            build!(q, a, versions)
        }
        AnyOutgoingRequest::KeysClaim(r) => build!(r.clone(), a, versions),
        AnyOutgoingRequest::ToDeviceRequest(r) => build!(
            send_event_to_device::v3::Request::new_raw(
                r.event_type.clone(),
                r.txn_id.clone(),
                r.messages.clone(),
            ),
            a,
            versions
        ),
        AnyOutgoingRequest::SignatureUpload(r) => build!(r.clone(), a, versions),
        AnyOutgoingRequest::RoomMessage(r) => build!(
            send_message_event::v3::Request::new(r.room_id.clone(), r.txn_id.clone(), &*r.content)
                .map_err(http_error)?,
            a,
            versions
        ),
    }
}

/// The cross-signing keys upload (`POST /keys/device_signing/upload`).
pub(crate) fn signing_keys_to_http(
    request: &UploadSigningKeysRequest,
    a: &Addressing,
) -> Result<http::Request<Vec<u8>>, CryptoError> {
    let raw = |k: &Option<matrix_sdk_crypto::types::CrossSigningKey>| {
        k.as_ref().map(|k| {
            ruma::serde::Raw::from_json(
                serde_json::value::to_raw_value(k).expect("cross-signing keys serialize"),
            )
        })
    };
    let mut q = upload_signing_keys::v3::Request::new();
    q.master_key = raw(&request.master_key);
    q.self_signing_key = raw(&request.self_signing_key);
    q.user_signing_key = raw(&request.user_signing_key);
    build!(q, a, Cow::Borrowed(&a.versions))
}

/// The signatures upload that completes cross-signing.
pub(crate) fn signatures_to_http(
    request: &upload_signatures::v3::Request,
    a: &Addressing,
) -> Result<http::Request<Vec<u8>>, CryptoError> {
    build!(request.clone(), a, Cow::Borrowed(&a.versions))
}

/// A response parsed for the request it answers, handed to `f` while it is borrowed.
pub(crate) enum Parsed {
    KeysUpload(upload_keys::v3::Response),
    KeysQuery(get_keys::v3::Response),
    KeysClaim(claim_keys::v3::Response),
    ToDevice(send_event_to_device::v3::Response),
    SignatureUpload(upload_signatures::v3::Response),
    RoomMessage(send_message_event::v3::Response),
}

impl Parsed {
    pub(crate) fn as_incoming(&self) -> AnyIncomingResponse<'_> {
        match self {
            Parsed::KeysUpload(r) => AnyIncomingResponse::KeysUpload(r),
            Parsed::KeysQuery(r) => AnyIncomingResponse::KeysQuery(r),
            Parsed::KeysClaim(r) => AnyIncomingResponse::KeysClaim(r),
            Parsed::ToDevice(r) => AnyIncomingResponse::ToDevice(r),
            Parsed::SignatureUpload(r) => AnyIncomingResponse::SignatureUpload(r),
            Parsed::RoomMessage(r) => AnyIncomingResponse::RoomMessage(r),
        }
    }
}

/// Reads the homeserver's answer to `request`; a non-2xx status is an error naming it.
pub(crate) fn parse(
    request: &AnyOutgoingRequest,
    response: http::Response<Vec<u8>>,
) -> Result<Parsed, CryptoError> {
    check_status(&response)?;
    Ok(match request {
        AnyOutgoingRequest::KeysUpload(_) => {
            Parsed::KeysUpload(parse_as::<upload_keys::v3::Response>(response)?)
        }
        AnyOutgoingRequest::KeysQuery(_) => Parsed::KeysQuery(parse_as(response)?),
        AnyOutgoingRequest::KeysClaim(_) => Parsed::KeysClaim(parse_as(response)?),
        AnyOutgoingRequest::ToDeviceRequest(_) => Parsed::ToDevice(parse_as(response)?),
        AnyOutgoingRequest::SignatureUpload(_) => Parsed::SignatureUpload(parse_as(response)?),
        AnyOutgoingRequest::RoomMessage(_) => Parsed::RoomMessage(parse_as(response)?),
    })
}

/// A non-2xx answer as an error carrying the homeserver's `errcode` and `error`.
pub(crate) fn check_status(response: &http::Response<Vec<u8>>) -> Result<(), CryptoError> {
    if response.status().is_success() {
        return Ok(());
    }
    #[derive(serde::Deserialize, Default)]
    struct Body {
        #[serde(default)]
        errcode: String,
        #[serde(default)]
        error: String,
    }
    let body: Body = serde_json::from_slice(response.body()).unwrap_or_default();
    Err(CryptoError::Refused {
        path: String::new(),
        status: response.status().as_u16(),
        errcode: body.errcode,
        error: body.error,
    })
}

fn parse_as<R: IncomingResponse>(response: http::Response<Vec<u8>>) -> Result<R, CryptoError> {
    R::try_from_http_response(response).map_err(http_error)
}
