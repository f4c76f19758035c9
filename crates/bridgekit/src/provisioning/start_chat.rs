//! Starting chats over HTTP: `contacts`, `search_users`, `resolve_identifier/{id}`,
//! `create_dm/{id}` and `create_group`, through one of the caller's logins (`?login_id=`, else
//! their first running one). Each is an optional capability of the login's
//! [`NetworkClient`](crate::logins::NetworkClient); one it lacks answers 501 `M_UNRECOGNIZED`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::auth::caller;
use super::{State, error, ok};
use crate::BridgeError;
use crate::appservice::errors::MatrixError;
use crate::context::BridgeContext;
use crate::ids::RemoteUserId;
use crate::incoming::Unsupported;
use crate::logins::{Contact, LoginContext, NetworkClient, OpenedChat, Permission};
use crate::remote::RemoteEvent;

fn login_not_found() -> MatrixError {
    MatrixError::new(404, "M_NOT_FOUND", "Login not found")
}

/// A capability's failure: 501 when the network lacks it.
fn failed(e: BridgeError) -> MatrixError {
    if e.downcast_ref::<Unsupported>().is_some() {
        return MatrixError::new(501, "M_UNRECOGNIZED", e.to_string());
    }
    MatrixError::new(500, "M_UNKNOWN", e.to_string())
}

/// The caller's login to act through, with its running client.
async fn login_of(
    state: &State,
    req: &HttpRequest,
) -> Result<(Arc<dyn NetworkClient>, LoginContext), MatrixError> {
    let user = caller(state, req, Permission::User).await?;
    let ctx = &state.ctx;
    let wanted = crate::appservice::query_pairs(req.query_string())
        .find(|(k, _)| k == "login_id" || k == "loginID")
        .map(|(_, v)| v);
    let logins = ctx
        .store()
        .logins_of(&user)
        .await
        .map_err(|e| failed(e.into()))?;
    let running = logins.into_iter().find_map(|record| {
        if wanted.as_deref().is_some_and(|w| w != record.id.as_str()) {
            return None;
        }
        let client = ctx.logins().client(&record.id)?;
        Some((
            client,
            LoginContext::new(ctx.clone(), record.id, record.user_id),
        ))
    });
    running.ok_or_else(login_not_found)
}

/// A contact as bridgev2's `ResolvedIdentifier`.
async fn resolved(ctx: &BridgeContext, contact: &Contact) -> Result<Value, MatrixError> {
    let ghost = ctx
        .ghost_for_remote(&contact.user.id)
        .await
        .map_err(|e| failed(e.into()))?;
    let mut body = json!({
        "id": contact.user.id.as_str(),
        "mxid": ghost.user_id().as_str(),
        "identifiers": contact.identifiers,
    });
    if let Some(name) = &contact.user.displayname {
        body["name"] = name.as_str().into();
    }
    if let Some(avatar) = &contact.user.avatar {
        body["avatar_url"] = avatar.as_str().into();
    }
    if let Some(chat) = &contact.direct_chat
        && let Ok(Some(portal)) = ctx.store().portal_by_key(chat).await
    {
        body["dm_room_mxid"] = portal.room_id.as_str().into();
    }
    Ok(body)
}

async fn resolved_all(
    ctx: &BridgeContext,
    contacts: &[Contact],
) -> Result<Vec<Value>, MatrixError> {
    let mut out = Vec::with_capacity(contacts.len());
    for contact in contacts {
        out.push(resolved(ctx, contact).await?);
    }
    Ok(out)
}

/// Makes (or finds) the portal of a chat the network opened, with the login's user invited;
/// its room ID.
async fn open(login: &LoginContext, chat: OpenedChat) -> Result<String, MatrixError> {
    let OpenedChat { key, mut info } = chat;
    if !info.invite.iter().any(|u| u == login.user_id()) {
        info.invite.push(login.user_id().to_owned());
    }
    login
        .apply_remote_event(&key, RemoteEvent::NewChat(info))
        .await
        .map_err(failed)?;
    login
        .join_portal(&key)
        .await
        .map_err(|e| failed(e.into()))?;
    let portal = login
        .store()
        .portal_by_key(&key)
        .await
        .map_err(|e| failed(e.into()))?
        .ok_or_else(|| failed("the chat's portal was not made".into()))?;
    Ok(portal.room_id.to_string())
}

/// `GET /v3/contacts`.
pub(super) async fn contacts(state: State, req: HttpRequest) -> HttpResponse {
    let answer = async {
        let (client, login) = login_of(&state, &req).await?;
        let contacts = client.contacts(&login).await.map_err(failed)?;
        Ok(json!({ "contacts": resolved_all(&state.ctx, &contacts).await? }))
    };
    reply(answer.await)
}

/// `POST /v3/search_users` with `{"query": …}`.
pub(super) async fn search_users(state: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let answer = async {
        let (client, login) = login_of(&state, &req).await?;
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| MatrixError::new(400, "M_NOT_JSON", e.to_string()))?;
        let query = body["query"].as_str().ok_or_else(|| {
            MatrixError::new(400, "M_MISSING_PARAM", "the body needs a \"query\"")
        })?;
        let results = client.search_users(&login, query).await.map_err(failed)?;
        Ok(json!({ "results": resolved_all(&state.ctx, &results).await? }))
    };
    reply(answer.await)
}

/// The contact `identifier` names, through the caller's login.
async fn resolve(
    client: &Arc<dyn NetworkClient>,
    login: &LoginContext,
    identifier: &str,
) -> Result<Contact, MatrixError> {
    client
        .resolve_identifier(login, identifier)
        .await
        .map_err(failed)?
        .ok_or_else(|| {
            MatrixError::new(
                404,
                "M_NOT_FOUND",
                format!("nobody on the network is {identifier:?}"),
            )
        })
}

/// `GET /v3/resolve_identifier/{identifier}`.
pub(super) async fn resolve_identifier(
    state: State,
    req: HttpRequest,
    identifier: web::Path<String>,
) -> HttpResponse {
    let answer = async {
        let (client, login) = login_of(&state, &req).await?;
        let contact = resolve(&client, &login, &identifier).await?;
        resolved(&state.ctx, &contact).await
    };
    reply(answer.await)
}

/// `POST /v3/create_dm/{identifier}`.
pub(super) async fn create_dm(
    state: State,
    req: HttpRequest,
    identifier: web::Path<String>,
) -> HttpResponse {
    let answer = async {
        let (client, login) = login_of(&state, &req).await?;
        let contact = resolve(&client, &login, &identifier).await?;
        let chat = client.create_dm(&login, &contact).await.map_err(failed)?;
        let room = open(&login, chat).await?;
        let mut body = resolved(&state.ctx, &contact).await?;
        body["dm_room_mxid"] = room.into();
        Ok(body)
    };
    reply(answer.await)
}

/// `POST /v3/create_group` with `{"name": …, "participants": [remote user IDs]}`.
pub(super) async fn create_group(state: State, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let answer = async {
        let (client, login) = login_of(&state, &req).await?;
        let body: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| MatrixError::new(400, "M_NOT_JSON", e.to_string()))?
        };
        let mut participants = Vec::new();
        for id in body["participants"].as_array().into_iter().flatten() {
            let id = id
                .as_str()
                .and_then(|id| RemoteUserId::new(id).ok())
                .ok_or_else(|| {
                    MatrixError::new(400, "M_INVALID_PARAM", "participants are remote user IDs")
                })?;
            participants.push(id);
        }
        let chat = client
            .create_group(&login, body["name"].as_str(), &participants)
            .await
            .map_err(failed)?;
        let id = chat.key.remote_id.to_string();
        let room = open(&login, chat).await?;
        Ok(json!({ "id": id, "mxid": room }))
    };
    reply(answer.await)
}

fn reply(answer: Result<Value, MatrixError>) -> HttpResponse {
    match answer {
        Ok(body) => ok(body),
        Err(e) => error(e),
    }
}
