//! The Client-Server calls an appservice makes, answered from the [`World`](super::world)
//! the way Synapse answers them: the as_token checked, `?user_id=` limited to the
//! appservice's namespace and to registered users, membership and power levels enforced.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::Inner;
use super::faults::Fault;
use super::world::MatrixError;

type State = web::Data<Arc<Inner>>;
type Answer = Result<HttpResponse, MatrixError>;

impl actix_web::ResponseError for MatrixError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}

fn ok(body: Value) -> Answer {
    Ok(HttpResponse::Ok().json(body))
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

/// The `ts` query parameter (appservice timestamp massaging).
fn ts(req: &HttpRequest) -> Option<u64> {
    query(req).get("ts")?.parse().ok()
}

/// Who the appservice acts as: checks the token, the namespace and the registration.
fn acting_user(hs: &Inner, req: &HttpRequest) -> Result<String, MatrixError> {
    let appservice = hs.appservice.lock().unwrap().clone();
    let Some(appservice) = appservice else {
        return Err(MatrixError::new(
            401,
            "M_UNKNOWN_TOKEN",
            "Invalid access token passed.",
        ));
    };
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(user) = token.and_then(|t| hs.world.lock().unwrap().user_tokens.get(t).cloned()) {
        return Ok(user); // a user's own access token: `?user_id=` means nothing
    }
    let double_puppet = hs.double_puppet_token.lock().unwrap().clone();
    if token.is_some() && token == double_puppet.as_deref() {
        let user = query(req).remove("user_id").unwrap_or_default();
        let world = hs.world.lock().unwrap();
        let local = user.ends_with(&format!(":{}", world.server_name));
        if !local {
            return Err(MatrixError::forbidden(format!(
                "Application service cannot masquerade as this user ({user})."
            )));
        }
        if !world.profiles.contains_key(&user) && !world.registered.contains(&user) {
            return Err(MatrixError::forbidden(format!(
                "Application service has not registered this user ({user})"
            )));
        }
        return Ok(user);
    }
    if token != Some(appservice.as_token.as_str()) {
        return Err(MatrixError::new(
            401,
            "M_UNKNOWN_TOKEN",
            "Invalid access token passed.",
        ));
    }
    let user = query(req)
        .remove("user_id")
        .unwrap_or_else(|| appservice.bot.clone());
    if !appservice.is_own(&user) {
        return Err(MatrixError::forbidden(format!(
            "Application service cannot masquerade as this user ({user})."
        )));
    }
    if user != appservice.bot && !hs.world.lock().unwrap().registered.contains(&user) {
        return Err(MatrixError::forbidden(format!(
            "Application service has not registered this user ({user})"
        )));
    }
    Ok(user)
}

pub(super) async fn ping(hs: State, body: web::Json<Value>) -> HttpResponse {
    if let Some((status, answer)) = hs.faults.lock().unwrap().ping_answer.clone() {
        return HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(answer);
    }
    let Some(appservice) = hs.appservice.lock().unwrap().clone() else {
        return HttpResponse::NotFound().json(json!({"errcode": "M_NOT_FOUND"}));
    };
    let answer = reqwest::Client::new()
        .post(format!("{}/_matrix/app/v1/ping", appservice.url))
        .bearer_auth(&appservice.hs_token)
        .json(&json!({"transaction_id": body["transaction_id"]}))
        .send()
        .await;
    match answer {
        Ok(r) if r.status() == 200 => HttpResponse::Ok().json(json!({"duration_ms": 1})),
        Ok(r) => HttpResponse::BadGateway()
            .json(json!({"errcode": "M_BAD_STATUS", "status": r.status().as_u16()})),
        Err(_) => HttpResponse::BadGateway()
            .json(json!({"errcode": "M_CONNECTION_FAILED", "error": "ping failed"})),
    }
}

pub(super) async fn register(hs: State, req: HttpRequest, body: web::Json<Value>) -> Answer {
    acting_user(&hs, &req)?;
    let local = body["username"].as_str().unwrap_or_default();
    let mut world = hs.world.lock().unwrap();
    let user = format!("@{local}:{}", world.server_name);
    let own = hs
        .appservice
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|a| a.is_own(&user));
    if !own {
        return Err(MatrixError::new(
            400,
            "M_EXCLUSIVE",
            "This user ID is reserved by an application service.",
        ));
    }
    if !world.registered.insert(user.clone()) {
        return Err(MatrixError::new(
            400,
            "M_USER_IN_USE",
            "User ID already taken.",
        ));
    }
    ok(json!({"user_id": user}))
}

/// The appservice's user, or the real user whose access token the request carries.
pub(super) async fn whoami(hs: State, req: HttpRequest) -> Answer {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(user) = token.and_then(|t| hs.world.lock().unwrap().user_tokens.get(t).cloned()) {
        return ok(json!({"user_id": user}));
    }
    ok(json!({"user_id": acting_user(&hs, &req)?}))
}

pub(super) async fn join(hs: State, req: HttpRequest, room: web::Path<String>) -> Answer {
    let user = acting_user(&hs, &req)?;
    let mut world = hs.world.lock().unwrap();
    let room_id = if room.starts_with('#') {
        world
            .aliases
            .get(room.as_str())
            .cloned()
            .ok_or_else(|| MatrixError::not_found(format!("Room alias {room} not found")))?
    } else {
        room.into_inner()
    };
    hs.log.lock().unwrap().joins.push(room_id.clone());
    world.join(&room_id, &user)?;
    ok(json!({"room_id": room_id}))
}

/// Invite, leave, kick, ban and unban: one membership change each.
pub(super) async fn membership(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Option<web::Json<Value>>,
) -> Answer {
    let user = acting_user(&hs, &req)?;
    let (room_id, action) = path.into_inner();
    let body = body.map(|b| b.into_inner()).unwrap_or(Value::Null);
    let target = body["user_id"].as_str().unwrap_or(&user).to_owned();
    let reason = body["reason"].as_str();
    let membership = match action.as_str() {
        "invite" => "invite",
        "leave" | "kick" | "unban" => "leave",
        "ban" => "ban",
        _ => {
            return Err(MatrixError::new(
                404,
                "M_UNRECOGNIZED",
                "Unrecognized request",
            ));
        }
    };
    hs.world
        .lock()
        .unwrap()
        .set_membership(&room_id, &user, &target, membership, reason)?;
    ok(json!({}))
}

pub(super) async fn get_profile_field(hs: State, path: web::Path<(String, String)>) -> Answer {
    let (user, field) = path.into_inner();
    let world = hs.world.lock().unwrap();
    let known = world.registered.contains(&user) || world.profiles.contains_key(&user);
    if !known {
        return Err(MatrixError::not_found("Profile was not found"));
    }
    let profile = world.profiles.get(&user).cloned().unwrap_or_default();
    let value = if field == "displayname" {
        profile.displayname
    } else {
        profile.avatar_url
    };
    ok(json!({ field: value }))
}

pub(super) async fn set_profile_field(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
) -> Answer {
    let acting = acting_user(&hs, &req)?;
    let (user, field) = path.into_inner();
    if acting != user {
        return Err(MatrixError::forbidden("Cannot set another user's profile"));
    }
    let value = body[field.as_str()].as_str().map(str::to_owned);
    hs.log.lock().unwrap().profile_writes += 1;
    hs.world.lock().unwrap().set_profile(&user, &field, value);
    ok(json!({}))
}

/// `PUT /rooms/{room}/send/{type}/{txnId}`, with the scripted faults applied.
pub(super) async fn send(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Json<Value>,
) -> Answer {
    let user = acting_user(&hs, &req)?;
    let (room_id, event_type, _txn) = path.into_inner();
    if event_type == "org.matrix.dummy_event" {
        hs.log.lock().unwrap().dummy_events += 1;
        return ok(json!({"event_id": "$dummy"}));
    }
    if let Some(event_id) = hs.log.lock().unwrap().by_path.get(req.path()) {
        return ok(json!({"event_id": event_id}));
    }
    let fault = {
        let mut faults = hs.faults.lock().unwrap();
        if faults.not_in_room.contains(&user) {
            return Err(MatrixError::forbidden(format!(
                "User {user} not in room {room_id} (None)"
            )));
        }
        hs.log
            .lock()
            .unwrap()
            .attempts
            .push(std::time::Instant::now());
        let fault = faults.sends.pop_front();
        if fault.is_none() && faults.blocked_rooms.contains(&room_id) {
            return Err(MatrixError::new(503, "M_UNKNOWN", "room blocked"));
        }
        fault
    };
    match fault {
        Some(Fault::Status(status)) => {
            return Err(MatrixError::new(status, "M_UNKNOWN", "injected"));
        }
        Some(Fault::RateLimit { secs }) => {
            return Ok(HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", secs.to_string()))
                .json(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1})));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let mut world = hs.world.lock().unwrap();
    let mut log = hs.log.lock().unwrap();
    if let Some(event_id) = log.by_path.get(req.path()) {
        return ok(json!({"event_id": event_id}));
    }
    let event = world.send_message(&room_id, &user, &event_type, body.into_inner(), ts(&req))?;
    log.by_path
        .insert(req.path().to_owned(), event.event_id.clone());
    log.sent.push(event.clone());
    drop((world, log));
    hs.pushed.notify_one();
    ok(json!({"event_id": event.event_id}))
}

pub(super) async fn redact(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: Option<web::Json<Value>>,
) -> Answer {
    let user = acting_user(&hs, &req)?;
    let (room_id, target, _txn) = path.into_inner();
    let mut world = hs.world.lock().unwrap();
    let mut log = hs.log.lock().unwrap();
    if let Some(event_id) = log.by_path.get(req.path()) {
        return ok(json!({"event_id": event_id}));
    }
    let reason = body.as_ref().and_then(|b| b["reason"].as_str());
    let event = world.redact(&room_id, &user, &target, reason, ts(&req))?;
    log.by_path
        .insert(req.path().to_owned(), event.event_id.clone());
    drop((world, log));
    hs.pushed.notify_one();
    ok(json!({"event_id": event.event_id}))
}

pub(super) async fn put_state(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: web::Json<Value>,
) -> Answer {
    let user = acting_user(&hs, &req)?;
    let (room_id, event_type, state_key) = path.into_inner();
    let event = hs.world.lock().unwrap().send_state(
        &room_id,
        &user,
        &event_type,
        &state_key,
        body.into_inner(),
        ts(&req),
    )?;
    hs.pushed.notify_one();
    ok(json!({"event_id": event.event_id}))
}

pub(super) async fn put_state_no_key(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
) -> Answer {
    let (room, event_type) = path.into_inner();
    put_state(
        hs,
        req,
        web::Path::from((room, event_type, String::new())),
        body,
    )
    .await
}

/// The room, if `user` may see it (a member now or before).
fn check_visible(hs: &Inner, room_id: &str, user: &str) -> Result<(), MatrixError> {
    let mut world = hs.world.lock().unwrap();
    let room = world.room(room_id)?;
    if room.membership(user).is_none() && !world.open_rooms {
        return Err(MatrixError::forbidden(format!(
            "User {user} not in room {room_id}, and room previews are disabled"
        )));
    }
    Ok(())
}

pub(super) async fn get_state(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> Answer {
    let user = acting_user(&hs, &req)?;
    let (room_id, event_type, state_key) = path.into_inner();
    check_visible(&hs, &room_id, &user)?;
    let mut world = hs.world.lock().unwrap();
    let room = world.room(&room_id)?;
    room.state_content(&event_type, &state_key)
        .cloned()
        .map(|c| HttpResponse::Ok().json(c))
        .ok_or_else(|| MatrixError::not_found("Event not found."))
}

pub(super) async fn get_state_no_key(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Answer {
    let (room, event_type) = path.into_inner();
    get_state(hs, req, web::Path::from((room, event_type, String::new()))).await
}

pub(super) async fn all_state(hs: State, req: HttpRequest, room: web::Path<String>) -> Answer {
    let user = acting_user(&hs, &req)?;
    check_visible(&hs, &room, &user)?;
    let mut world = hs.world.lock().unwrap();
    let room = world.room(&room)?;
    let events: Vec<Value> = room
        .state
        .values()
        .map(|&i| room.timeline[i].to_json())
        .collect();
    ok(Value::Array(events))
}

pub(super) async fn joined_members(hs: State, req: HttpRequest, room: web::Path<String>) -> Answer {
    let user = acting_user(&hs, &req)?;
    check_visible(&hs, &room, &user)?;
    let mut world = hs.world.lock().unwrap();
    let room = world.room(&room)?;
    let mut joined = serde_json::Map::new();
    for (member, membership) in room.members() {
        if membership == "join" {
            let content = room.state_content("m.room.member", &member).cloned();
            let content = content.unwrap_or_default();
            joined.insert(
                member,
                json!({"display_name": content["displayname"], "avatar_url": content["avatar_url"]}),
            );
        }
    }
    ok(json!({ "joined": joined }))
}

/// `GET /rooms/{room}/members`, with `membership` / `not_membership` filters.
pub(super) async fn members(hs: State, req: HttpRequest, room: web::Path<String>) -> Answer {
    let user = acting_user(&hs, &req)?;
    check_visible(&hs, &room, &user)?;
    let filters = query(&req);
    let mut world = hs.world.lock().unwrap();
    let room = world.room(&room)?;
    let chunk: Vec<Value> = room
        .state
        .iter()
        .filter(|((t, _), _)| t == "m.room.member")
        .map(|(_, &i)| &room.timeline[i])
        .filter(|e| {
            let m = e.membership().unwrap_or_default();
            filters.get("membership").is_none_or(|want| want == m)
                && filters.get("not_membership").is_none_or(|not| not != m)
        })
        .map(|e| e.to_json())
        .collect();
    ok(json!({ "chunk": chunk }))
}

/// `GET /rooms/{room}/messages`: tokens are timeline positions.
pub(super) async fn messages(hs: State, req: HttpRequest, room: web::Path<String>) -> Answer {
    let user = acting_user(&hs, &req)?;
    check_visible(&hs, &room, &user)?;
    let q = query(&req);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let backwards = q.get("dir").is_none_or(|d| d == "b");
    let mut world = hs.world.lock().unwrap();
    let room = world.room(&room)?;
    let len = room.timeline.len();
    let from: usize = q
        .get("from")
        .and_then(|f| f.parse().ok())
        .unwrap_or(if backwards { len } else { 0 })
        .min(len);
    let (chunk, end): (Vec<Value>, Option<usize>) = if backwards {
        let start = from.saturating_sub(limit);
        let chunk = room.timeline[start..from]
            .iter()
            .rev()
            .map(|e| e.to_json())
            .collect();
        (chunk, (start > 0).then_some(start))
    } else {
        let stop = (from + limit).min(len);
        let chunk = room.timeline[from..stop]
            .iter()
            .map(|e| e.to_json())
            .collect();
        (chunk, (stop < len).then_some(stop))
    };
    let mut body = json!({"chunk": chunk, "start": from.to_string()});
    if let Some(end) = end {
        body["end"] = end.to_string().into();
    }
    ok(body)
}

pub(super) async fn create_room(hs: State, req: HttpRequest, body: web::Json<Value>) -> Answer {
    let user = acting_user(&hs, &req)?;
    let room_id = hs.world.lock().unwrap().create_room(&user, &body)?;
    hs.pushed.notify_one();
    ok(json!({"room_id": room_id}))
}

pub(super) async fn send_to_device(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
) -> Answer {
    acting_user(&hs, &req)?;
    let (event_type, _txn) = path.into_inner();
    hs.log
        .lock()
        .unwrap()
        .to_device
        .push((event_type, body.into_inner()));
    ok(json!({}))
}

pub(super) async fn upload(hs: State, req: HttpRequest, body: web::Bytes) -> Answer {
    acting_user(&hs, &req)?;
    let mut world = hs.world.lock().unwrap();
    let id = format!("media{}", world.next_id());
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let uri = format!("mxc://{}/{id}", world.server_name);
    world.media.insert(id, (content_type, body.to_vec()));
    ok(json!({"content_uri": uri}))
}

pub(super) async fn download(
    hs: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Answer {
    acting_user(&hs, &req)?;
    let (_server, id) = path.into_inner();
    let world = hs.world.lock().unwrap();
    let (content_type, bytes) = world
        .media
        .get(&id)
        .cloned()
        .ok_or_else(|| MatrixError::not_found("Not found"))?;
    let mut answer = HttpResponse::Ok();
    if let Some(content_type) = content_type {
        answer.content_type(content_type);
    }
    Ok(answer.body(bytes))
}

/// Calls the fake accepts and has nothing to keep of: typing, receipts, presence, devices,
/// the room directory.
pub(super) async fn accepted(hs: State, req: HttpRequest) -> Answer {
    acting_user(&hs, &req)?;
    ok(json!({}))
}

pub(super) async fn unrecognized() -> Answer {
    Err(MatrixError::new(
        404,
        "M_UNRECOGNIZED",
        "Unrecognized request",
    ))
}
