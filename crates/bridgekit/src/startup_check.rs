//! The startup check: ping the homeserver through the appservice ping (spec v1.7), which makes
//! the homeserver call us back, and turn each way that can fail into one line that says what
//! is wrong and how to fix it. A homeserver that is still starting is waited for.

use std::time::{Duration, Instant};

use ruma::api::client::appservice::request_ping;
use ruma::api::error::{BadStatusErrorData, ErrorKind};

use crate::client::{ClientError, RetryPolicy};
use crate::config::Config;

/// Why the bridge cannot work with its homeserver.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

/// Pings the homeserver until it answers or `config.homeserver.startup_timeout` passes.
/// `ping_seen` tells whether our ping handler saw the given transaction ID.
pub(crate) async fn check_homeserver(
    ctx: &crate::BridgeContext,
    config: &Config,
    ping_seen: impl Fn(&str) -> bool,
) -> Result<Duration, StartupError> {
    let deadline = Instant::now() + config.homeserver.startup_timeout;
    let txn_id = format!(
        "bridgekit-startup-{}",
        crate::registration::random_token(12)
    );
    let quick = RetryPolicy {
        max_elapsed: Duration::ZERO,
        request_timeout: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    let hs = &config.homeserver.url;
    let reg = config.appservice.registration.display();
    let us = &config.appservice.url;
    loop {
        let mut request = request_ping::v1::Request::new(config.appservice.id.clone());
        request.transaction_id = Some(txn_id.as_str().into());
        let error = match ctx.client().execute_with(request, None, &quick).await {
            Ok(response) => {
                if !ping_seen(&txn_id) {
                    return Err(StartupError(format!(
                        "the homeserver answered the ping, but the bridge never received it: something else answers at {us}; check appservice.url"
                    )));
                }
                return Ok(response.duration);
            }
            Err(e) => e,
        };
        let waitable = match &error {
            ClientError::Network(_) => true,
            // A standby that just took over: the load balancer in front may send the
            // homeserver's ping to the old copy until its next health check.
            e if config.store.standby => e.status().is_some_and(|s| s >= 500),
            e => {
                e.status().is_some_and(|s| s >= 500)
                    && !matches!(
                        e.kind(),
                        Some(
                            ErrorKind::BadStatus(_)
                                | ErrorKind::ConnectionFailed
                                | ErrorKind::ConnectionTimeout
                        )
                    )
            }
        };
        if waitable && Instant::now() < deadline {
            tracing::info!(homeserver = %hs, %error, "waiting for the homeserver");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        return Err(StartupError(diagnose(&error, config, &reg.to_string())));
    }
}

fn diagnose(error: &ClientError, config: &Config, reg: &str) -> String {
    let hs = &config.homeserver.url;
    let us = &config.appservice.url;
    let id = &config.appservice.id;
    match (error, error.kind()) {
        (ClientError::Network(cause), _) => format!(
            "cannot reach the homeserver at {hs} ({cause}); is it running, and is homeserver.url right?"
        ),
        (_, Some(ErrorKind::UnknownToken(_) | ErrorKind::MissingToken)) => format!(
            "the homeserver does not know this bridge's as_token: add {reg} to app_service_config_files in the homeserver's config and restart the homeserver (it reads registrations only at startup; restart it too if the file was regenerated)"
        ),
        (ClientError::Matrix { message, .. }, Some(ErrorKind::Forbidden))
            if message.contains("Mismatching application service ID") =>
        {
            format!(
                "the homeserver has this as_token registered under a different appservice id than {id:?}: make appservice.id equal to the id in {reg} and restart the homeserver"
            )
        }
        (ClientError::Matrix { message, .. }, Some(ErrorKind::Forbidden)) => format!(
            "the homeserver refused the as_token from {reg} for the appservice ping ({message}): the homeserver has not loaded this registration; add it to app_service_config_files and restart the homeserver"
        ),
        (_, Some(ErrorKind::UrlNotSet)) => format!(
            "the registration the homeserver loaded has no url, so it never contacts the bridge: set url: {us} in {reg} and restart the homeserver"
        ),
        (
            _,
            Some(ErrorKind::BadStatus(BadStatusErrorData {
                status: Some(s), ..
            })),
        ) if s.as_u16() == 401 || s.as_u16() == 403 => format!(
            "the homeserver reached the bridge at {us}, but its hs_token does not match {reg}: the homeserver loaded an older copy of the registration; restart the homeserver so it reads the current file"
        ),
        (_, Some(ErrorKind::BadStatus(BadStatusErrorData { status, .. }))) => format!(
            "the homeserver reached {us} but got HTTP {}: another program may be listening there; check appservice.url and appservice.listen",
            status.map_or("error".to_owned(), |s| s.as_u16().to_string())
        ),
        (_, Some(ErrorKind::ConnectionFailed)) => format!(
            "the homeserver cannot connect to the bridge at {us} (from the registration's url): check that appservice.url is reachable from the homeserver and matches appservice.listen ({})",
            config.appservice.listen
        ),
        (_, Some(ErrorKind::ConnectionTimeout)) => format!(
            "the homeserver timed out connecting to the bridge at {us}: check firewalls and appservice.url"
        ),
        (e, _) => format!("the homeserver refused the startup ping: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let text = "homeserver: {url: 'http://127.0.0.1:8008', server_name: example.org}\n\
                    appservice: {id: echo, listen: '127.0.0.1:29333', bot: echobot, registration: reg.yaml}\n\
                    store: {path: store}\n";
        Config::parse(text, Path::new("/srv/config.yaml"), &|_| None).unwrap()
    }

    fn matrix(status: u16, kind: ErrorKind, message: &str) -> ClientError {
        ClientError::Matrix {
            status,
            errcode: kind.errcode().to_string(),
            kind,
            message: message.into(),
        }
    }

    #[test]
    fn each_failure_gets_its_own_fix() {
        let c = config();
        let cases = [
            (
                ClientError::Network("connection failed".into()),
                "is it running",
            ),
            (
                matrix(401, ErrorKind::MissingToken, "x"),
                "app_service_config_files",
            ),
            (
                matrix(
                    403,
                    ErrorKind::Forbidden,
                    "Mismatching application service ID in path",
                ),
                "appservice.id",
            ),
            (matrix(400, ErrorKind::UrlNotSet, "x"), "has no url"),
            (
                matrix(502, ErrorKind::BadStatus(BadStatusErrorData::new()), "x"),
                "another program",
            ),
            (
                matrix(502, ErrorKind::ConnectionFailed, "x"),
                "cannot connect to the bridge at http://127.0.0.1:29333",
            ),
            (matrix(504, ErrorKind::ConnectionTimeout, "x"), "timed out"),
        ];
        for (error, expected) in cases {
            let line = diagnose(&error, &c, "/srv/reg.yaml");
            assert!(line.contains(expected), "{error}: {line}");
            assert!(!line.contains('\n'));
        }
    }
}
