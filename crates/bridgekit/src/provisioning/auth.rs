//! Who is calling: the shared secret as a bearer token, the user named by `?user_id=`, and
//! their permission level.

use actix_web::HttpRequest;
use ruma::{OwnedUserId, UserId};
use subtle::ConstantTimeEq;

use crate::appservice::AppState;
use crate::appservice::errors::MatrixError;
use crate::logins::Permission;

/// The user a request acts for, once its secret and their permission (at least `needed`)
/// are checked.
pub(super) fn caller(
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
    if !bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(MatrixError::new(
            401,
            "M_UNKNOWN_TOKEN",
            "Invalid auth token",
        ));
    }
    let user = crate::appservice::query_pairs(req.query_string())
        .find(|(k, _)| k == "user_id")
        .map(|(_, v)| v)
        .ok_or_else(|| {
            MatrixError::new(
                400,
                "M_MISSING_PARAM",
                "user_id is required with the shared secret",
            )
        })?;
    let user = UserId::parse(&user)
        .map_err(|e| MatrixError::new(400, "M_INVALID_PARAM", format!("user_id: {e}")))?;
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
