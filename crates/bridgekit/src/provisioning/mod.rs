//! The provisioning API, wire-compatible with mautrix-go bridgev2's `/_matrix/provision/v3`
//! (its OpenAPI file, `bridgev2/matrix/provisioning.yaml`), so login managers written for
//! bridgev2 bridges work with a bridgekit bridge: `whoami`, `login/flows`, `logins`,
//! `login/start/{flow}`, the `user_input` and `display_and_wait` steps, `logout/{login}`,
//! and starting chats (`contacts`, `search_users`, `resolve_identifier`, `create_dm`,
//! `create_group`) where the network's logins can.
//!
//! Off unless `provisioning.shared_secret` is set. A request carries the secret as a bearer
//! token and names the user it acts for with `?user_id=`; permission levels apply as in the
//! management room. Errors have bridgev2's JSON shape (`errcode`, `error`).

mod auth;
mod login;
mod start_chat;
mod whoami;

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::appservice::AppState;
use crate::appservice::errors::MatrixError;

/// The API's settings and the logins in progress through it.
pub(crate) struct Provisioning {
    /// The shared secret; `None`: the API is off.
    pub secret: Option<String>,
    /// Login processes by their ID (the `login_id` of a step).
    processes: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<login::Process>>>>,
    /// Users' access tokens seen lately, with whose they are and since when.
    tokens: Mutex<HashMap<String, (ruma::OwnedUserId, std::time::Instant)>>,
    /// For asking the homeserver whose a token is.
    http: reqwest::Client,
}

impl Provisioning {
    /// The API with `secret` (off without one).
    pub(crate) fn new(secret: Option<String>) -> Self {
        Self {
            secret,
            processes: Mutex::default(),
            tokens: Mutex::default(),
            http: reqwest::Client::new(),
        }
    }
}

/// The routes, under `/_matrix/provision/v3`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_matrix/provision/v3")
            .route("/whoami", web::get().to(whoami::whoami))
            .route("/login/flows", web::get().to(whoami::flows))
            .route("/logins", web::get().to(whoami::logins))
            .route("/login/start/{flow}", web::post().to(login::start))
            .route(
                "/login/step/{process}/{step}/user_input",
                web::post().to(login::user_input),
            )
            .route(
                "/login/step/{process}/{step}/cookies",
                web::post().to(login::cookies),
            )
            .route(
                "/login/step/{process}/{step}/display_and_wait",
                web::post().to(login::display_and_wait),
            )
            .route("/logout/{login}", web::post().to(login::logout))
            .route("/contacts", web::get().to(start_chat::contacts))
            .route("/search_users", web::post().to(start_chat::search_users))
            .route(
                "/resolve_identifier/{identifier}",
                web::get().to(start_chat::resolve_identifier),
            )
            .route(
                "/create_dm/{identifier}",
                web::post().to(start_chat::create_dm),
            )
            .route("/create_group", web::post().to(start_chat::create_group))
            .default_service(web::to(preflight_or_unknown)),
    );
}

/// CORS preflight for browser managers; anything else here is unknown.
async fn preflight_or_unknown(req: HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return with_cors(HttpResponse::NoContent()).finish();
    }
    error(MatrixError::new(
        404,
        "M_UNRECOGNIZED",
        "Unrecognized request",
    ))
}

fn with_cors(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header((
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, DELETE, OPTIONS",
        ))
        .insert_header((
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        ));
    builder
}

/// A JSON answer with CORS headers.
pub(super) fn ok(body: serde_json::Value) -> HttpResponse {
    with_cors(HttpResponse::Ok()).json(body)
}

/// An error answer with CORS headers.
pub(super) fn error(e: MatrixError) -> HttpResponse {
    with_cors(HttpResponse::build(e.status))
        .json(serde_json::json!({ "errcode": e.errcode, "error": e.message }))
}

/// The state every handler needs.
type State = web::Data<AppState>;
