//! The Client-Server side: one pooled HTTP client that sends any ruma request as the bot or
//! as a ghost (`?user_id=`), retrying what is worth retrying.
//!
//! Retries: network errors and 5xx back off exponentially with jitter; 429 waits for the
//! `Retry-After` header first and `retry_after_ms` second (ruma resolves that precedence);
//! other 4xx fail at once with a typed [`ClientError`].

mod devices;
mod error;
pub mod intent;
mod media;
mod membership;
mod outbox;
mod outgoing;
mod profile;
mod rooms;
mod signals;
mod txn_id;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use ruma::UserId;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::error::{
    ErrorKind, FromHttpResponseError, IntoHttpError, LimitExceededErrorData, RetryAfter,
};
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{
    AppserviceUserIdentity, IncomingResponseExt, MatrixVersion, OutgoingRequest,
    OutgoingRequestAppserviceExt, SupportedVersions,
};

pub use error::ClientError;
pub use intent::Intent;
pub use outbox::PendingSend;
pub(crate) use outbox::{Outbox, with_durable_origin};
pub use outgoing::Outgoing;
pub use rooms::{CreateRoom, MessagesPage};
pub use txn_id::TxnIds;

/// Largest response body read back from the homeserver (media downloads included).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Most requests in flight to the homeserver at once.
const MAX_CONCURRENT_REQUESTS: usize = 64;

/// How long and how hard to retry a failing call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// First backoff delay.
    pub initial_delay: Duration,
    /// Backoff ceiling.
    pub max_delay: Duration,
    /// Give up (returning the last error) once this much time has passed.
    pub max_elapsed: Duration,
    /// Timeout of one HTTP attempt.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(600),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Picks the input a ruma path builder needs, whichever kind the endpoint has.
pub trait PathInput: PathBuilder {
    /// The input for `versions`.
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) -> Self::Input<'_> {}
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Self::Input<'_> {
        Cow::Borrowed(versions)
    }
}

/// An endpoint's error type that becomes a [`ClientError`].
pub trait IntoClientError {
    /// The conversion.
    fn into_client_error(self) -> ClientError;
}

impl IntoClientError for ruma::api::error::Error {
    fn into_client_error(self) -> ClientError {
        ClientError::from_ruma(self)
    }
}

impl IntoClientError for ruma::api::client::uiaa::UiaaResponse {
    fn into_client_error(self) -> ClientError {
        match self {
            Self::MatrixError(e) => ClientError::from_ruma(e),
            Self::AuthResponse(info) => ClientError::Http {
                status: 401,
                body: format!("user-interactive authentication required: {:?}", info.flows),
            },
        }
    }
}

/// A Client-Server request an appservice can send: any ruma `client-api` request.
pub trait Endpoint: OutgoingRequest<EndpointError: IntoClientError> + Send + 'static {
    /// Builds the HTTP request with the as_token and, if given, `?user_id=`.
    fn build(
        self,
        base_url: &str,
        as_token: &str,
        user_id: Option<&UserId>,
        versions: &SupportedVersions,
    ) -> Result<http::Request<Vec<u8>>, IntoHttpError>;
}

impl<R> Endpoint for R
where
    R: OutgoingRequest<EndpointError: IntoClientError> + Send + 'static,
    for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    R::PathBuilder: PathInput,
{
    fn build(
        self,
        base_url: &str,
        as_token: &str,
        user_id: Option<&UserId>,
        versions: &SupportedVersions,
    ) -> Result<http::Request<Vec<u8>>, IntoHttpError> {
        let identity = user_id.map(AppserviceUserIdentity::new).unwrap_or_default();
        self.try_into_http_request_with_identity(
            base_url,
            SendAccessToken::Appservice(as_token),
            identity,
            <R::PathBuilder as PathInput>::input(versions),
        )
    }
}

/// The appservice's connection to its homeserver. Cheap to clone: one connection pool.
#[derive(Clone)]
pub struct HomeserverClient {
    http: reqwest::Client,
    base_url: String,
    as_token: std::sync::Arc<str>,
    versions: std::sync::Arc<SupportedVersions>,
    retry: RetryPolicy,
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("HomeserverClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl HomeserverClient {
    /// A client for the homeserver at `base_url`, authenticating with `as_token`.
    pub fn new(base_url: &str, as_token: &str, retry: RetryPolicy) -> Result<Self, ClientError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(retry.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("bridgekit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let versions = SupportedVersions {
            versions: BTreeSet::from([
                MatrixVersion::V1_1,
                MatrixVersion::V1_7,
                MatrixVersion::V1_11,
                MatrixVersion::V1_13,
            ]),
            features: BTreeSet::new(),
        };
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            as_token: as_token.into(),
            versions: versions.into(),
            retry,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        })
    }

    /// The retry policy calls use unless given another.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The homeserver's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The appservice token (for the crypto machine's requests).
    #[cfg(feature = "encryption")]
    pub(crate) fn as_token(&self) -> &str {
        &self.as_token
    }

    /// Sends `request` as `user_id` (or as the bot when `None`), retrying network errors,
    /// 5xx and 429 within the [`RetryPolicy`].
    pub async fn execute<R: Endpoint>(
        &self,
        request: R,
        user_id: Option<&UserId>,
    ) -> Result<R::IncomingResponse, ClientError> {
        self.execute_with(request, user_id, &self.retry).await
    }

    /// Like [`execute`](Self::execute) with a policy of its own.
    pub async fn execute_with<R: Endpoint>(
        &self,
        request: R,
        user_id: Option<&UserId>,
        retry: &RetryPolicy,
    ) -> Result<R::IncomingResponse, ClientError> {
        self.execute_as(request, user_id, None, retry).await
    }

    /// Sends `request` as `user_id` on its device `device_id` (device masquerading, MSC4326:
    /// both the stable `device_id` and the unstable `org.matrix.msc3202.device_id` are sent).
    pub async fn execute_as<R: Endpoint>(
        &self,
        request: R,
        user_id: Option<&UserId>,
        device_id: Option<&ruma::DeviceId>,
        retry: &RetryPolicy,
    ) -> Result<R::IncomingResponse, ClientError> {
        let result = self
            .execute_attempts(request, &self.as_token, user_id, device_id, retry)
            .await;
        count_error(&result);
        result
    }

    /// Sends `request` with another token: a double-puppet appservice's (with `?user_id=`) or
    /// a user's own access token (without), for acting as a real Matrix user.
    pub(crate) async fn execute_with_token<R: Endpoint>(
        &self,
        request: R,
        token: &str,
        user_id: Option<&UserId>,
        retry: &RetryPolicy,
    ) -> Result<R::IncomingResponse, ClientError> {
        let result = self
            .execute_attempts(request, token, user_id, None, retry)
            .await;
        count_error(&result);
        result
    }

    async fn execute_attempts<R: Endpoint>(
        &self,
        request: R,
        token: &str,
        user_id: Option<&UserId>,
        device_id: Option<&ruma::DeviceId>,
        retry: &RetryPolicy,
    ) -> Result<R::IncomingResponse, ClientError> {
        let built = request
            .build(&self.base_url, token, user_id, &self.versions)
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let (parts, body) = built.into_parts();
        let mut url = parts.uri.to_string();
        if let Some(device) = device_id {
            let sep = if url.contains('?') { '&' } else { '?' };
            let device = crate::ids::percent_encode(device.as_str());
            url.push_str(&format!(
                "{sep}device_id={device}&org.matrix.msc3202.device_id={device}"
            ));
        }
        let started = Instant::now();
        let mut backoff = retry.initial_delay;
        loop {
            let _permit = self.in_flight.acquire().await.expect("never closed");
            let attempt_started = Instant::now();
            let attempt = self
                .http
                .request(parts.method.clone(), &url)
                .headers(parts.headers.clone())
                .body(body.clone())
                .send()
                .await;
            metrics::histogram!("bridgekit_homeserver_request_seconds")
                .record(attempt_started.elapsed().as_secs_f64());
            let (error, wait) = match attempt {
                Err(e) => (ClientError::Network(without_url(e)), None),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    if response
                        .content_length()
                        .is_some_and(|n| n as usize > MAX_RESPONSE_BYTES)
                    {
                        return Err(ClientError::Response("response body too large".into()));
                    }
                    let bytes = match response.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            let error = ClientError::Network(without_url(e));
                            if !self
                                .sleep_before_retry(started, &mut backoff, None, retry)
                                .await
                            {
                                return Err(error);
                            }
                            continue;
                        }
                    };
                    let mut http_response = http::Response::new(bytes.as_ref());
                    *http_response.status_mut() = status;
                    *http_response.headers_mut() = headers;
                    match R::IncomingResponse::try_from_http_response(http_response) {
                        Ok(parsed) => return Ok(parsed),
                        Err(FromHttpResponseError::Deserialization(e)) => {
                            return Err(ClientError::Response(e.to_string()));
                        }
                        Err(FromHttpResponseError::Server(e)) => {
                            let error = e.into_client_error();
                            let retryable = status.is_server_error() || status.as_u16() == 429;
                            if !retryable {
                                return Err(error);
                            }
                            let wait = rate_limit_wait(&error);
                            (error, wait)
                        }
                        Err(e) => return Err(ClientError::Response(e.to_string())),
                    }
                }
            };
            tracing::debug!(%error, path = parts.uri.path(), "homeserver call failed; retrying");
            if !self
                .sleep_before_retry(started, &mut backoff, wait, retry)
                .await
            {
                return Err(error);
            }
        }
    }

    /// Sends a request built elsewhere (the crypto machine's, which carry their own URL and
    /// token), retrying network errors, 5xx and 429 within the policy; answers any other
    /// response as it came.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) async fn send_raw(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, ClientError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let started = Instant::now();
        let mut backoff = self.retry.initial_delay;
        loop {
            let attempt = {
                let _permit = self.in_flight.acquire().await.expect("never closed");
                let sent = self
                    .http
                    .request(parts.method.clone(), &url)
                    .headers(parts.headers.clone())
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) => {
                        let status = response.status();
                        let headers = response.headers().clone();
                        response.bytes().await.map(|bytes| {
                            let mut out = http::Response::new(bytes.to_vec());
                            *out.status_mut() = status;
                            *out.headers_mut() = headers;
                            out
                        })
                    }
                    Err(e) => Err(e),
                }
            };
            let error = match attempt {
                Ok(response)
                    if !(response.status().is_server_error()
                        || response.status().as_u16() == 429) =>
                {
                    return Ok(response);
                }
                Ok(response) => ClientError::Http {
                    status: response.status().as_u16(),
                    body: String::from_utf8_lossy(response.body())
                        .chars()
                        .take(200)
                        .collect(),
                },
                Err(e) => ClientError::Network(without_url(e)),
            };
            tracing::debug!(%error, path = parts.uri.path(), "homeserver call failed; retrying");
            if !self
                .sleep_before_retry(started, &mut backoff, None, &self.retry)
                .await
            {
                return Err(error);
            }
        }
    }

    /// Sleeps before the next attempt; false when the time budget is spent.
    async fn sleep_before_retry(
        &self,
        started: Instant,
        backoff: &mut Duration,
        wait: Option<Duration>,
        retry: &RetryPolicy,
    ) -> bool {
        let delay = wait.unwrap_or_else(|| jitter(*backoff));
        if started.elapsed() + delay > retry.max_elapsed {
            return false;
        }
        *backoff = (*backoff * 2).min(retry.max_delay);
        tokio::time::sleep(delay).await;
        true
    }
}

/// Counts a failed call by its errcode.
fn count_error<T>(result: &Result<T, ClientError>) {
    if let Err(error) = result {
        let errcode = match error {
            ClientError::Matrix { errcode, .. } => errcode.clone(),
            ClientError::Network(_) => "network".to_owned(),
            ClientError::Http { .. } => "http".to_owned(),
            _ => "other".to_owned(),
        };
        metrics::counter!("bridgekit_homeserver_errors_total", "errcode" => errcode).increment(1);
    }
}

/// How long a 429 asks us to wait.
fn rate_limit_wait(error: &ClientError) -> Option<Duration> {
    match error.kind()? {
        ErrorKind::LimitExceeded(LimitExceededErrorData {
            retry_after: Some(after),
            ..
        }) => Some(match after {
            RetryAfter::Delay(d) => *d,
            RetryAfter::DateTime(t) => t.duration_since(SystemTime::now()).unwrap_or_default(),
        }),
        _ => None,
    }
}

/// Full jitter over the upper half: between `d/2` and `d`.
pub(crate) fn jitter(d: Duration) -> Duration {
    let r = getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / u32::MAX as f64;
    d.mul_f64(0.5 + r / 2.0)
}

/// reqwest errors print the URL; ours carry `?user_id=` only, but keep logs to the cause.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(&e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}
