//! Matrix-shaped error responses: `{"errcode": ..., "error": ...}`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

/// An error answered to the homeserver.
#[derive(Debug)]
pub(crate) struct MatrixError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
}

impl MatrixError {
    pub(crate) fn new(status: u16, errcode: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("valid status"),
            errcode,
            message: message.into(),
        }
    }

    pub(crate) fn response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(serde_json::json!({ "errcode": self.errcode, "error": self.message }))
    }
}

impl From<MatrixError> for HttpResponse {
    fn from(e: MatrixError) -> Self {
        e.response()
    }
}

pub(crate) async fn unrecognized() -> HttpResponse {
    MatrixError::new(404, "M_UNRECOGNIZED", "Unrecognized request").response()
}

pub(crate) async fn method_not_allowed() -> HttpResponse {
    MatrixError::new(
        405,
        "M_UNRECOGNIZED",
        "Method not allowed for this endpoint",
    )
    .response()
}

pub(crate) fn not_found(what: &str) -> HttpResponse {
    MatrixError::new(404, "M_NOT_FOUND", what).response()
}

pub(crate) fn ok_empty() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}
