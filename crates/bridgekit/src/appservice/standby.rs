//! What a hot standby answers while it waits for the store: it is alive, not ready and not
//! active, and every homeserver request gets `503` so the homeserver keeps it for the copy
//! that holds the store (or retries it here after the takeover).
//!
//! A load balancer in front of two copies routes to the one whose `/health/active` answers
//! `200` (deploy/standby.md).

use std::net::TcpListener;

use actix_web::HttpResponse;

use super::errors::MatrixError;

/// Starts the standby's server on `listener`; the returned server runs when awaited.
pub(crate) fn serve(listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    Ok(actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .route("/health/live", actix_web::web::get().to(live))
            .route("/health/ready", actix_web::web::get().to(waiting))
            .route("/health/active", actix_web::web::get().to(waiting))
            .route("/metrics", actix_web::web::get().to(metrics_text))
            .default_service(actix_web::web::to(refuse))
    })
    .workers(1)
    .disable_signals()
    // Nothing here takes long: the takeover should not wait for idle connections.
    .shutdown_timeout(1)
    .max_connections(super::MAX_CONNECTIONS)
    .client_request_timeout(super::HEADER_TIMEOUT)
    .listen(listener)?
    .run())
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "live" }))
}

async fn waiting() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "standby" }))
}

async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body("# TYPE bridgekit_active gauge\nbridgekit_active 0\n")
}

async fn refuse() -> HttpResponse {
    MatrixError::new(
        503,
        "M_UNKNOWN",
        "this copy of the bridge is a standby; the copy holding the store answers",
    )
    .response()
}
