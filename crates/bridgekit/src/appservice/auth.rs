//! Authenticating the homeserver: `Authorization: Bearer <hs_token>` or the legacy
//! `access_token` query parameter (spec §Authorisation, v1.4+).
//!
//! Missing token → 401 `M_MISSING_TOKEN`; wrong token → 403 `M_FORBIDDEN`; header and query
//! both present and different → 403. Tokens are compared in constant time and never logged.

use subtle::ConstantTimeEq;

use super::errors::MatrixError;

/// Checks the request's credentials against `hs_token`.
pub(crate) fn authorize(
    authorization: Option<&[u8]>,
    query: &str,
    hs_token: &str,
) -> Result<(), MatrixError> {
    let header_token = match authorization {
        None => None,
        Some(value) => Some(bearer(value).ok_or_else(|| {
            MatrixError::new(
                401,
                "M_MISSING_TOKEN",
                "The Authorization header must be 'Bearer <hs_token>'",
            )
        })?),
    };
    let query_token = query_access_token(query);
    let matches = |token: &[u8]| -> bool { token.ct_eq(hs_token.as_bytes()).into() };
    let forbidden = || MatrixError::new(403, "M_FORBIDDEN", "Invalid hs_token");
    match (header_token, query_token.as_deref()) {
        (None, None) => Err(MatrixError::new(401, "M_MISSING_TOKEN", "Missing hs_token")),
        (Some(h), Some(q)) => {
            // Both must match (spec: "ensure both match if both are provided").
            let both = matches(h) & matches(q.as_bytes());
            if both { Ok(()) } else { Err(forbidden()) }
        }
        (Some(t), None) => {
            if matches(t) {
                Ok(())
            } else {
                Err(forbidden())
            }
        }
        (None, Some(t)) => {
            if matches(t.as_bytes()) {
                Ok(())
            } else {
                Err(forbidden())
            }
        }
    }
}

/// The token of a `Bearer` header (scheme case-insensitive), or `None` for another scheme.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ")).then(|| rest.trim_ascii())
}

/// The `access_token` query parameter, percent-decoded.
fn query_access_token(query: &str) -> Option<String> {
    crate::appservice::query_pairs(query).find_map(|(k, v)| (k == "access_token").then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "secret_hs_token";

    fn status(header: Option<&str>, query: &str) -> Result<(), (u16, &'static str)> {
        authorize(header.map(str::as_bytes), query, T).map_err(|e| (e.status.as_u16(), e.errcode))
    }

    #[test]
    fn spec_auth_rules() {
        assert_eq!(status(Some("Bearer secret_hs_token"), ""), Ok(()));
        assert_eq!(status(Some("bearer secret_hs_token"), ""), Ok(()));
        assert_eq!(status(None, "access_token=secret_hs_token"), Ok(()));
        assert_eq!(status(None, "x=1&access_token=secret%5Fhs%5Ftoken"), Ok(()));
        assert_eq!(
            status(
                Some("Bearer secret_hs_token"),
                "access_token=secret_hs_token"
            ),
            Ok(())
        );
        assert_eq!(status(None, ""), Err((401, "M_MISSING_TOKEN")));
        assert_eq!(status(Some("Basic abc"), ""), Err((401, "M_MISSING_TOKEN")));
        assert_eq!(status(Some("Bearer nope"), ""), Err((403, "M_FORBIDDEN")));
        assert_eq!(status(Some("Bearer "), ""), Err((403, "M_FORBIDDEN")));
        assert_eq!(status(None, "access_token=nope"), Err((403, "M_FORBIDDEN")));
        assert_eq!(
            status(Some("Bearer secret_hs_token"), "access_token=nope"),
            Err((403, "M_FORBIDDEN"))
        );
        assert_eq!(
            status(Some("Bearer nope"), "access_token=secret_hs_token"),
            Err((403, "M_FORBIDDEN"))
        );
        assert_eq!(
            status(Some("Bearer secret_hs_token_longer"), ""),
            Err((403, "M_FORBIDDEN"))
        );
    }
}
