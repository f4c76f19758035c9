//! The routes: the nine `/_matrix/app/v1` endpoints, health checks, and the spec's
//! `404`/`405 M_UNRECOGNIZED` for everything else.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use ruma::{RoomAliasId, UserId};

use super::errors::{MatrixError, method_not_allowed, not_found, ok_empty, unrecognized};
use super::transaction::{BodyError, parse_transaction};
use super::{AppState, MAX_BODY_BYTES, auth::authorize, query_pairs};
use crate::intake::Intaken;

type State = web::Data<AppState>;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(
        web::scope("/_matrix/app/v1")
            .service(resource("/transactions/{txn_id}").route(web::put().to(put_transaction)))
            .service(resource("/users/{user_id}").route(web::get().to(get_user)))
            .service(resource("/rooms/{alias}").route(web::get().to(get_room_alias)))
            .service(resource("/ping").route(web::post().to(post_ping)))
            .service(resource("/thirdparty/protocol/{protocol}").route(web::get().to(get_protocol)))
            .service(resource("/thirdparty/user/{protocol}").route(web::get().to(get_users_of)))
            .service(
                resource("/thirdparty/location/{protocol}").route(web::get().to(get_locations_of)),
            )
            .service(resource("/thirdparty/user").route(web::get().to(get_users)))
            .service(resource("/thirdparty/location").route(web::get().to(get_locations)))
            .default_service(web::to(unrecognized)),
    )
    .service(resource("/health/live").route(web::get().to(live)))
    .service(resource("/health/ready").route(web::get().to(ready)))
    .service(resource("/health/active").route(web::get().to(active)))
    .service(resource("/metrics").route(web::get().to(metrics_text)))
    .configure(crate::provisioning::configure)
    .default_service(web::to(unrecognized));
}

fn check_auth(state: &AppState, req: &HttpRequest) -> Result<(), MatrixError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    authorize(header, req.query_string(), &state.hs_token).inspect_err(|e| {
        tracing::warn!(
            path = req.path(),
            status = e.status.as_u16(),
            "refused a homeserver request: {}",
            e.message
        );
    })
}

fn too_large() -> MatrixError {
    MatrixError::new(
        413,
        "M_TOO_LARGE",
        format!("bodies are limited to {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads the body after authentication, up to [`MAX_BODY_BYTES`]: refused at once when its
/// `Content-Length` says more, and read into one buffer of that size (no doubling).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::BytesMut, MatrixError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            MatrixError::new(400, "M_BAD_JSON", format!("could not read the body: {e}"))
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Every log line about one transaction carries its ID (the `transaction` span).
async fn put_transaction(
    state: State,
    req: HttpRequest,
    txn_id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    use tracing::Instrument;
    let span = tracing::info_span!("transaction", txn_id = %txn_id.as_str());
    take_transaction(state, req, txn_id, payload)
        .instrument(span)
        .await
}

async fn take_transaction(
    state: State,
    req: HttpRequest,
    txn_id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let outcome = |o: &'static str| {
        metrics::counter!("bridgekit_transactions_total", "outcome" => o).increment(1)
    };
    if let Err(e) = check_auth(&state, &req) {
        outcome("unauthorized");
        return e.response();
    }
    // Dropped last (after the body and what was parsed from it).
    let mut give_back = crate::memory::GiveBackWhenDone::default();
    let body = match read_body(&req, payload).await {
        Ok(b) => b,
        Err(e) => {
            outcome("bad_body");
            return e.response();
        }
    };
    give_back.body_of(body.len());
    let parsed = match parse_transaction(&txn_id, &body) {
        Ok(p) => p,
        Err(e) => {
            let errcode = match e {
                BodyError::NotJson(_) => "M_NOT_JSON",
                BodyError::BadJson(_) => "M_BAD_JSON",
            };
            tracing::warn!("refused a transaction: {e}");
            outcome("bad_body");
            return MatrixError::new(400, errcode, e.to_string()).response();
        }
    };
    let pending = state.intake.room_for_more().await;
    if pending >= crate::intake::MAX_PENDING_EVENTS {
        outcome("backlog");
        // Once when it starts: the homeserver retries often, and each retry is expected.
        if !state
            .behind
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                pending,
                "the bridge is behind; asking the homeserver to retry later"
            );
        }
        return MatrixError::new(
            503,
            "M_UNKNOWN",
            format!("the bridge has {pending} events still to handle; retry later"),
        )
        .response();
    }
    if state
        .behind
        .swap(false, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::info!(pending, "the bridge caught up; taking transactions again");
    }
    let skipped = parsed.skipped;
    #[cfg(feature = "encryption")]
    state
        .ctx
        .homeserver_support()
        .observe(&parsed.incoming.items);
    let mut by_kind = [0u64; 4];
    for item in &parsed.incoming.items {
        by_kind[item.kind as usize] += 1;
    }
    match state.intake.submit(parsed.incoming).await {
        Ok(Intaken::New(items)) => {
            outcome("new");
            for (kind, n) in ["timeline", "ephemeral", "to_device", "device_data"]
                .into_iter()
                .zip(by_kind)
            {
                metrics::counter!("bridgekit_events_received_total", "kind" => kind).increment(n);
            }
            metrics::counter!("bridgekit_events_skipped_total").increment(skipped as u64);
            tracing::debug!(items, skipped, "transaction recorded");
            ok_empty()
        }
        Ok(Intaken::Duplicate) => {
            outcome("duplicate");
            tracing::info!("transaction already recorded (a retry); not processed again");
            ok_empty()
        }
        // Not acknowledged, so the homeserver keeps it and retries: nothing is lost.
        Err(e) => {
            outcome("store_failed");
            MatrixError::new(
                500,
                "M_UNKNOWN",
                format!("could not record the transaction durably: {e}"),
            )
            .response()
        }
    }
}

async fn get_user(state: State, req: HttpRequest, user_id: web::Path<String>) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    let Ok(user_id) = UserId::parse(user_id.as_str()) else {
        return MatrixError::new(400, "M_INVALID_PARAM", "not a valid user ID").response();
    };
    if !state.ctx.is_own_user(&user_id) {
        return not_found("not a user of this bridge");
    }
    match state.bridge.user_exists(&state.ctx, &user_id).await {
        Ok(true) => ok_empty(),
        Ok(false) => not_found("no such user"),
        Err(error) => {
            tracing::warn!(%error, %user_id, "user query failed");
            not_found("no such user")
        }
    }
}

async fn get_room_alias(state: State, req: HttpRequest, alias: web::Path<String>) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    let Ok(alias) = RoomAliasId::parse(alias.as_str()) else {
        return MatrixError::new(400, "M_INVALID_PARAM", "not a valid room alias").response();
    };
    match state.bridge.room_alias_exists(&state.ctx, &alias).await {
        Ok(true) => ok_empty(),
        Ok(false) => not_found("no such room alias"),
        Err(error) => {
            tracing::warn!(%error, %alias, "room alias query failed");
            not_found("no such room alias")
        }
    }
}

async fn post_ping(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    // Dropped last (after the body and what was parsed from it).
    let mut give_back = crate::memory::GiveBackWhenDone::default();
    let body = match read_body(&req, payload).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    give_back.body_of(body.len());
    #[derive(serde::Deserialize)]
    struct Ping {
        #[serde(default)]
        transaction_id: Option<String>,
    }
    let ping: Ping = if body.is_empty() {
        Ping {
            transaction_id: None,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return MatrixError::new(400, "M_NOT_JSON", format!("ping body: {e}")).response();
            }
        }
    };
    tracing::debug!(transaction_id = ?ping.transaction_id, "homeserver ping");
    *state.last_ping.lock().unwrap_or_else(|e| e.into_inner()) = ping.transaction_id;
    ok_empty()
}

/// The query parameters of a third-party lookup, without the legacy token.
fn fields(req: &HttpRequest) -> BTreeMap<String, String> {
    query_pairs(req.query_string())
        .filter(|(k, _)| k != "access_token")
        .collect()
}

async fn get_protocol(state: State, req: HttpRequest, protocol: web::Path<String>) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    match state
        .bridge
        .thirdparty_protocol(&state.ctx, &protocol)
        .await
    {
        Ok(Some(p)) => HttpResponse::Ok().json(p),
        Ok(None) => not_found("no such protocol"),
        Err(error) => {
            tracing::warn!(%error, "third-party protocol lookup failed");
            not_found("no such protocol")
        }
    }
}

fn lookup<T: serde::Serialize>(
    result: Result<Vec<T>, crate::BridgeError>,
    what: &str,
) -> HttpResponse {
    match result {
        Ok(found) if !found.is_empty() => HttpResponse::Ok().json(found),
        Ok(_) => not_found(&format!("no {what} found")),
        Err(error) => {
            tracing::warn!(%error, "third-party {what} lookup failed");
            not_found(&format!("no {what} found"))
        }
    }
}

async fn get_users_of(state: State, req: HttpRequest, protocol: web::Path<String>) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    lookup(
        state
            .bridge
            .thirdparty_users(&state.ctx, Some(&protocol), &fields(&req))
            .await,
        "users",
    )
}

async fn get_locations_of(
    state: State,
    req: HttpRequest,
    protocol: web::Path<String>,
) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    lookup(
        state
            .bridge
            .thirdparty_locations(&state.ctx, Some(&protocol), &fields(&req))
            .await,
        "locations",
    )
}

async fn get_users(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    lookup(
        state
            .bridge
            .thirdparty_users(&state.ctx, None, &fields(&req))
            .await,
        "users",
    )
}

async fn get_locations(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(e) = check_auth(&state, &req) {
        return e.response();
    }
    lookup(
        state
            .bridge
            .thirdparty_locations(&state.ctx, None, &fields(&req))
            .await,
        "locations",
    )
}

async fn metrics_text(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(state.ctx.backend(), state.ctx.outbox().oldest_age()).await)
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "live" }))
}

/// This copy holds the store (a standby answers 503): where a load balancer sends traffic.
async fn active() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "active" }))
}

async fn ready(state: State) -> HttpResponse {
    if state.ready.load(Ordering::Acquire) {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "starting" }))
    }
}
