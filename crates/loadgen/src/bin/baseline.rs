//! The honest ceiling: a minimal appservice with no framework and no store. It parses each
//! transaction, answers 200, and (in echo mode) answers each event with one
//! `PUT …/send/…` as a ghost, through one pooled client. It checks the hs_token and keeps
//! send txnIds unique across ghosts, and nothing else: no durability, no order, no retries.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Clone)]
struct Args {
    #[arg(long)]
    listen: String,
    #[arg(long)]
    hs: String,
    #[arg(long)]
    as_token: String,
    #[arg(long)]
    hs_token: String,
    #[arg(long, default_value = "echo")]
    mode: String,
}

struct State {
    args: Args,
    http: reqwest::Client,
    txn: AtomicU64,
}

#[derive(Deserialize)]
struct Txn<'a> {
    #[serde(borrow)]
    events: Vec<Event<'a>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    room_id: &'a str,
    sender: &'a str,
    #[serde(borrow)]
    content: &'a serde_json::value::RawValue,
}

async fn transaction(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth.strip_prefix("Bearer ") != Some(state.args.hs_token.as_str()) {
        return HttpResponse::Forbidden().body(r#"{"errcode":"M_FORBIDDEN"}"#);
    }
    let Ok(txn) = serde_json::from_slice::<Txn>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    if state.args.mode == "echo" {
        for ev in txn.events {
            let n = state.txn.fetch_add(1, Ordering::Relaxed);
            let localpart = ev
                .sender
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap_or("x");
            let url = format!(
                "{}/_matrix/client/v3/rooms/{}/send/m.room.message/b{n}?user_id=%40_echo_{localpart}%3Alocalhost",
                state.args.hs,
                ev.room_id.replace('!', "%21").replace(':', "%3A"),
            );
            let request = state
                .http
                .put(url)
                .bearer_auth(&state.args.as_token)
                .header("content-type", "application/json")
                .body(ev.content.get().to_owned());
            actix_web::rt::spawn(async move {
                let _ = request.send().await;
            });
        }
    }
    HttpResponse::Ok().body("{}")
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().body("{}")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let listen = args.listen.clone();
    let state = web::Data::new(State {
        args,
        http: reqwest::Client::new(),
        txn: AtomicU64::new(0),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route(
                "/_matrix/app/v1/transactions/{id}",
                web::put().to(transaction),
            )
            .route("/health/ready", web::get().to(ok))
    })
    .workers(1)
    .bind(listen)?
    .run()
    .await
}
