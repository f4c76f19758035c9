//! `whoami`, `login/flows` and `logins`: what a manager shows.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::auth::caller;
use super::{State, error, ok};
use crate::appservice::errors::MatrixError;
use crate::logins::Permission;
use crate::store::{LoginRecord, LoginState};

fn internal(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::new(500, "M_UNKNOWN", e.to_string())
}

/// bridgev2's `state_event` for a login state.
pub(super) fn state_event(state: LoginState) -> &'static str {
    match state {
        LoginState::Starting | LoginState::Connecting => "CONNECTING",
        LoginState::Connected => "CONNECTED",
        LoginState::TransientDisconnect => "TRANSIENT_DISCONNECT",
        LoginState::BadCredentials => "BAD_CREDENTIALS",
        LoginState::LoggedOut => "LOGGED_OUT",
        _ => "UNKNOWN_ERROR",
    }
}

fn login_json(login: &LoginRecord) -> Value {
    let mut state = json!({
        "state_event": state_event(login.state),
        "timestamp": login.state_since.map(|t| u64::from(t.0)).unwrap_or(0),
    });
    if let Some(reason) = &login.state_reason {
        state["message"] = reason.clone().into();
    }
    let name = login
        .remote_name
        .as_deref()
        .unwrap_or(login.remote_id.as_str());
    json!({
        "id": login.id,
        "name": name,
        "state": state,
        "profile": {"name": name, "username": login.remote_id},
    })
}

fn flows_json(state: &State) -> Value {
    state
        .bridge
        .login_flows()
        .iter()
        .map(|f| json!({"id": f.id, "name": f.name, "description": f.description}))
        .collect()
}

/// `GET /v3/whoami`.
pub(super) async fn whoami(state: State, req: HttpRequest) -> HttpResponse {
    let user = match caller(&state, &req, Permission::Commands).await {
        Ok(user) => user,
        Err(e) => return error(e),
    };
    let store = state.ctx.store();
    let (record, logins) = match (store.user(&user).await, store.logins_of(&user).await) {
        (Ok(record), Ok(logins)) => (record, logins),
        (Err(e), _) | (_, Err(e)) => return error(internal(e)),
    };
    let id = state.ctx.appservice_id().to_owned();
    let mut body = json!({
        "network": {
            "displayname": state.bridge.version(),
            "network_url": "",
            "network_icon": "",
            "network_id": id,
            "beeper_bridge_type": id,
        },
        "login_flows": flows_json(&state),
        "homeserver": state.ctx.server_name().as_str(),
        "bridge_bot": state.ctx.bot_user_id().as_str(),
        "command_prefix": state.ctx.options().command_prefix,
        "logins": logins.iter().map(login_json).collect::<Vec<_>>(),
    });
    if let Some(room) = record.and_then(|u| u.management_room) {
        body["management_room"] = room.as_str().into();
    }
    ok(body)
}

/// `GET /v3/login/flows`.
pub(super) async fn flows(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(e) = caller(&state, &req, Permission::User).await {
        return error(e);
    }
    ok(json!({"flows": flows_json(&state)}))
}

/// `GET /v3/logins`.
pub(super) async fn logins(state: State, req: HttpRequest) -> HttpResponse {
    let user = match caller(&state, &req, Permission::User).await {
        Ok(user) => user,
        Err(e) => return error(e),
    };
    match state.ctx.store().logins_of(&user).await {
        Ok(logins) => {
            let ids: Vec<&str> = logins.iter().map(|l| l.id.as_str()).collect();
            ok(json!({"login_ids": ids}))
        }
        Err(e) => error(internal(e)),
    }
}
