//! Logging in over HTTP: `login/start/{flow}` makes a process and answers its first step;
//! each `login/step/{process}/{step}/…` call carries out one step and answers the next, until
//! `complete`. The steps are the bridge's own [`LoginProcess`] — the same one the management
//! room walks through.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use ruma::OwnedUserId;
use serde_json::{Value, json};

use super::auth::caller;
use super::{State, error, ok};
use crate::appservice::errors::MatrixError;
use crate::ids::LoginId;
use crate::logins::commands;
use crate::logins::{Display, LoginInput, LoginProcess, LoginStep, Permission};

/// What a step asks of the manager next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Input,
    Cookies,
    Display,
}

/// One login in progress through the API.
pub(crate) struct Process {
    user: OwnedUserId,
    flow: String,
    process: Box<dyn LoginProcess>,
    step_id: String,
    awaiting: Awaiting,
    /// For a login again (`?login_id=`): the account it must be.
    expected: Option<LoginId>,
    started: Instant,
}

fn not_found() -> MatrixError {
    MatrixError::new(404, "M_NOT_FOUND", "Login not found")
}

fn failed(e: impl std::fmt::Display) -> MatrixError {
    MatrixError::new(500, "M_UNKNOWN", format!("login failed: {e}"))
}

fn new_process_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cancels and forgets processes older than the login timeout.
async fn prune(state: &State) {
    let limit = state.ctx.options().login_timeout;
    let expired: Vec<_> = {
        let mut processes = state.provisioning.processes.lock().unwrap();
        let old: Vec<String> = processes
            .iter()
            .filter(|(_, p)| p.try_lock().is_ok_and(|p| p.started.elapsed() > limit))
            .map(|(id, _)| id.clone())
            .collect();
        old.iter().filter_map(|id| processes.remove(id)).collect()
    };
    for process in expired {
        process.lock().await.process.cancel().await;
    }
}

/// `POST /v3/login/start/{flow}[?login_id=]`.
pub(super) async fn start(state: State, req: HttpRequest, flow: web::Path<String>) -> HttpResponse {
    let user = match caller(&state, &req, Permission::User).await {
        Ok(user) => user,
        Err(e) => return error(e),
    };
    prune(&state).await;
    let flow = flow.into_inner();
    if !state.bridge.login_flows().iter().any(|f| f.id == flow) {
        return error(MatrixError::new(
            404,
            "M_NOT_FOUND",
            format!("no login flow {flow:?}"),
        ));
    }
    let expected =
        match crate::appservice::query_pairs(req.query_string()).find(|(k, _)| k == "login_id") {
            None => None,
            Some((_, id)) => match commands::own_login(&state.ctx, &user, &id).await {
                Ok(login) if login.user_id == user => Some(login.id),
                _ => return error(not_found()),
            },
        };
    let mut process = match state.bridge.start_login(&state.ctx, &user, &flow).await {
        Ok(process) => process,
        Err(e) => return error(failed(e)),
    };
    let step = match process.start().await {
        Ok(step) => step,
        Err(e) => return error(failed(e)),
    };
    let process = Process {
        user,
        flow,
        process,
        step_id: String::new(),
        awaiting: Awaiting::Input,
        expected,
        started: Instant::now(),
    };
    answer(&state, new_process_id(), process, step).await
}

/// Answers `step` of `process` (named `id`), keeping the process if the login goes on.
async fn answer(state: &State, id: String, mut process: Process, step: LoginStep) -> HttpResponse {
    static STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let step_id = format!("{}.{}.{n}", state.ctx.appservice_id(), process.flow);
    let body = match step {
        LoginStep::Input {
            instructions,
            fields,
        } => {
            process.awaiting = Awaiting::Input;
            let fields: Vec<Value> = fields
                .iter()
                .map(|f| json!({"type": f.kind.as_str(), "id": f.id, "name": f.name}))
                .collect();
            json!({"type": "user_input", "instructions": instructions,
                   "user_input": {"fields": fields}})
        }
        LoginStep::Cookies {
            instructions,
            url,
            user_agent,
            fields,
        } => {
            process.awaiting = Awaiting::Cookies;
            let fields: Vec<Value> = fields.iter().map(cookie_field).collect();
            let mut cookies = json!({"url": url, "fields": fields});
            if let Some(agent) = user_agent {
                cookies["user_agent"] = agent.into();
            }
            json!({"type": "cookies", "instructions": instructions, "cookies": cookies})
        }
        LoginStep::Display {
            instructions,
            display,
        } => {
            process.awaiting = Awaiting::Display;
            let shown = match display {
                Display::Code(code) => json!({"type": "code", "data": code}),
                Display::Qr(data) => json!({"type": "qr", "data": data}),
                _ => json!({"type": "nothing"}),
            };
            json!({"type": "display_and_wait", "instructions": instructions,
                   "display_and_wait": shown})
        }
        LoginStep::Complete(new) => {
            if let Some(expected) = &process.expected
                && *expected != new.id
            {
                process.process.cancel().await;
                return error(failed(format!(
                    "that is the account {}, not the login {expected}",
                    new.id
                )));
            }
            let login_id = new.id.clone();
            return match commands::complete(&state.ctx, &process.user, None, new).await {
                Ok(text) => ok(json!({
                    "login_id": id, "type": "complete", "step_id": step_id,
                    "instructions": text, "complete": {"user_login_id": login_id},
                })),
                Err(e) => error(failed(e)),
            };
        }
    };
    let mut body = body;
    body["login_id"] = id.clone().into();
    body["step_id"] = step_id.clone().into();
    process.step_id = step_id;
    state
        .provisioning
        .processes
        .lock()
        .unwrap()
        .insert(id, Arc::new(tokio::sync::Mutex::new(process)));
    ok(body)
}

/// Takes the caller's process `id` if its current step is `step` awaiting `awaiting`.
async fn take(
    state: &State,
    req: &HttpRequest,
    id: &str,
    step: &str,
    awaiting: Awaiting,
) -> Result<Process, MatrixError> {
    let user = caller(state, req, Permission::User).await?;
    let handle = state
        .provisioning
        .processes
        .lock()
        .unwrap()
        .get(id)
        .cloned()
        .ok_or_else(not_found)?;
    let guard = handle.lock().await;
    if guard.user != user {
        return Err(not_found());
    }
    if guard.step_id != step || guard.awaiting != awaiting {
        return Err(MatrixError::new(
            400,
            "M_BAD_STATE",
            "Step type does not match",
        ));
    }
    drop(guard);
    drop(handle);
    let mut processes = state.provisioning.processes.lock().unwrap();
    let handle = processes.remove(id).ok_or_else(not_found)?;
    // Out of the map, it is ours alone — unless a concurrent call still holds it, when it
    // goes back for that call.
    match Arc::try_unwrap(handle) {
        Ok(process) => Ok(process.into_inner()),
        Err(handle) => {
            processes.insert(id.to_owned(), handle);
            Err(MatrixError::new(
                400,
                "M_BAD_STATE",
                "this step is already being submitted",
            ))
        }
    }
}

/// A cookie step's field in bridgev2's shape.
fn cookie_field(field: &crate::logins::CookieField) -> Value {
    use crate::logins::CookieSource;
    let name = field.name.as_str();
    match &field.source {
        CookieSource::Cookie { domain } => {
            json!({"type": "cookie", "name": name, "cookie_domain": domain})
        }
        CookieSource::LocalStorage => json!({"type": "local_storage", "name": name}),
        CookieSource::RequestHeader { url_regex } => {
            json!({"type": "request_header", "name": name, "request_url_regex": url_regex})
        }
        CookieSource::RequestBody { url_regex } => {
            json!({"type": "request_body", "name": name, "request_url_regex": url_regex})
        }
    }
}

/// `POST /v3/login/step/{process}/{step}/user_input`.
pub(super) async fn user_input(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    submit(state, req, path, body, Awaiting::Input).await
}

/// `POST /v3/login/step/{process}/{step}/cookies`: the values, keyed by name.
pub(super) async fn cookies(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    submit(state, req, path, body, Awaiting::Cookies).await
}

/// Submits the values of an input or cookie step.
async fn submit(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    awaiting: Awaiting,
) -> HttpResponse {
    let (id, step) = path.into_inner();
    let input: LoginInput = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(e) => {
            return error(MatrixError::new(
                400,
                "M_NOT_JSON",
                format!("Failed to decode request body: {e}"),
            ));
        }
    };
    let mut process = match take(&state, &req, &id, &step, awaiting).await {
        Ok(process) => process,
        Err(e) => return error(e),
    };
    match process.process.submit(input).await {
        Ok(next) => answer(&state, id, process, next).await,
        Err(e) => error(failed(e)),
    }
}

/// `POST /v3/login/step/{process}/{step}/display_and_wait`.
pub(super) async fn display_and_wait(
    state: State,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (id, step) = path.into_inner();
    let mut process = match take(&state, &req, &id, &step, Awaiting::Display).await {
        Ok(process) => process,
        Err(e) => return error(e),
    };
    let limit = state.ctx.options().login_timeout;
    match tokio::time::timeout(limit, process.process.wait()).await {
        Ok(Ok(next)) => answer(&state, id, process, next).await,
        Ok(Err(e)) => error(failed(e)),
        Err(_) => {
            process.process.cancel().await;
            error(failed("the login timed out"))
        }
    }
}

/// `POST /v3/logout/{login}` (`all`: every login of the caller).
pub(super) async fn logout(
    state: State,
    req: HttpRequest,
    login: web::Path<String>,
) -> HttpResponse {
    let user = match caller(&state, &req, Permission::User).await {
        Ok(user) => user,
        Err(e) => return error(e),
    };
    let ids: Vec<String> = if login.as_str() == "all" {
        match state.ctx.store().logins_of(&user).await {
            Ok(logins) => logins.into_iter().map(|l| l.id.to_string()).collect(),
            Err(e) => return error(failed(e)),
        }
    } else {
        vec![login.into_inner()]
    };
    for id in ids {
        if commands::logout(&state.ctx, &user, &id).await.is_err() {
            return error(not_found());
        }
    }
    ok(json!({}))
}
