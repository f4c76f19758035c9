//! Who is calling: the shared secret as a bearer token with the user named by `?user_id=`,
//! or the user's own Matrix access token (checked with the homeserver's `account/whoami`,
//! remembered for a minute); then their permission level.

use actix_web::HttpRequest;
use ruma::{OwnedUserId, UserId};
use subtle::ConstantTimeEq;

use crate::appservice::AppState;
use crate::appservice::errors::MatrixError;
use crate::logins::Permission;

/// How long a user's access token is believed without asking the homeserver again.
const TOKEN_CACHE: std::time::Duration = std::time::Duration::from_secs(60);

/// The user a request acts for, once its token and their permission (at least `needed`)
/// are checked.
pub(super) async fn caller(
    state: &AppState,
    req: &HttpRequest,
    needed: Permission,
) -> Result<OwnedUserId, MatrixError> {
    let Some(secret) = &state.provisioning.secret else {
        return Err(MatrixError::new(
            404,
            "M_UNRECOGNIZED",
            "the provisioning API is off (set provisioning.shared_secret)",
        ));
    };
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| MatrixError::new(401, "M_MISSING_TOKEN", "Missing auth token"))?;
    let named = crate::appservice::query_pairs(req.query_string())
        .find(|(k, _)| k == "user_id")
        .map(|(_, v)| v);
    let user = if bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
        let user = named.ok_or_else(|| {
            MatrixError::new(
                400,
                "M_MISSING_PARAM",
                "user_id is required with the shared secret",
            )
        })?;
        UserId::parse(&user)
            .map_err(|e| MatrixError::new(400, "M_INVALID_PARAM", format!("user_id: {e}")))?
    } else {
        let user = token_owner(state, token).await?;
        if named.is_some_and(|n| n != user.as_str()) {
            return Err(MatrixError::new(
                403,
                "M_FORBIDDEN",
                "an access token acts only for its own user",
            ));
        }
        user
    };
    let level = state.ctx.permissions().of(&user);
    if level < needed {
        return Err(MatrixError::new(
            403,
            "M_FORBIDDEN",
            format!("{user} may not do this (permission {level}, needs {needed})"),
        ));
    }
    Ok(user)
}

/// The user an access token belongs to, from the cache or the homeserver.
async fn token_owner(state: &AppState, token: &str) -> Result<OwnedUserId, MatrixError> {
    let provisioning = &state.provisioning;
    if let Some((user, at)) = provisioning.tokens.lock().unwrap().get(token)
        && at.elapsed() < TOKEN_CACHE
    {
        return Ok(user.clone());
    }
    let url = format!(
        "{}/_matrix/client/v3/account/whoami",
        state.ctx.client().base_url().trim_end_matches('/')
    );
    let answer = provisioning
        .http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| {
            MatrixError::new(
                502,
                "M_UNKNOWN",
                format!("cannot reach the homeserver: {e}"),
            )
        })?;
    if answer.status() == 401 || answer.status() == 403 {
        return Err(MatrixError::new(
            401,
            "M_UNKNOWN_TOKEN",
            "Invalid auth token",
        ));
    }
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| MatrixError::new(502, "M_UNKNOWN", format!("the homeserver's whoami: {e}")))?;
    let user = body["user_id"]
        .as_str()
        .and_then(|u| UserId::parse(u).ok())
        .ok_or_else(|| MatrixError::new(401, "M_UNKNOWN_TOKEN", "Invalid auth token"))?;
    let mut tokens = provisioning.tokens.lock().unwrap();
    tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE);
    tokens.insert(token.to_owned(), (user.clone(), std::time::Instant::now()));
    Ok(user)
}
