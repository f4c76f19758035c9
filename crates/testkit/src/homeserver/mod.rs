//! A fake homeserver that behaves like Synapse towards an appservice: it keeps rooms with
//! their state, members and timeline, serves the Client-Server calls an intent makes (with
//! Synapse's errcodes), pushes the events the appservice is interested in — its own sends
//! included, reflected back as Synapse does — one transaction at a time, and lets a test act
//! as real Matrix users ([`MatrixUser`]).

mod event;
mod faults;
mod pusher;
mod routes;
mod user;
mod world;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use serde_json::Value;
use tokio::sync::Notify;

pub use event::RoomEvent;
pub use faults::Fault;
pub use user::MatrixUser;
pub use world::MatrixError;

use faults::{CallLog, Faults};
use world::World;

/// The appservice the fake serves.
#[derive(Clone, Debug)]
pub(crate) struct Appservice {
    pub url: String,
    pub as_token: String,
    pub hs_token: String,
    pub bot: String,
    pub ghost_prefix: String,
    pub server_name: String,
}

impl Appservice {
    /// Whether `user` is in the appservice's exclusive namespace (the bot or a ghost).
    pub fn is_own(&self, user: &str) -> bool {
        user == self.bot
            || user
                .strip_prefix('@')
                .and_then(|u| u.split_once(':'))
                .is_some_and(|(local, server)| {
                    server == self.server_name && local.starts_with(&self.ghost_prefix)
                })
    }
}

/// What the server's handlers share.
pub(crate) struct Inner {
    id: u64,
    pub world: Mutex<World>,
    pub faults: Mutex<Faults>,
    pub log: Mutex<CallLog>,
    pub appservice: Mutex<Option<Appservice>>,
    /// The token of a second, double-puppet appservice that may act as any user, if any.
    pub double_puppet_token: Mutex<Option<String>>,
    pub pushing: Mutex<bool>,
    /// Woken when an event is queued for the appservice.
    pub pushed: Notify,
    /// Woken when the appservice acknowledged a transaction.
    pub acked: Notify,
}

/// The fake homeserver. Dropping it stops the server.
pub struct TestHomeserver {
    port: u16,
    inner: Arc<Inner>,
    handle: Mutex<Option<ServerHandle>>,
}

impl std::fmt::Debug for TestHomeserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHomeserver")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl TestHomeserver {
    /// Starts a homeserver for the server name `localhost` on a free port. Call it inside a
    /// Tokio runtime (`#[tokio::test]`).
    pub fn start() -> Arc<Self> {
        Self::start_on(crate::free_port())
    }

    /// Starts on `port`.
    pub fn start_on(port: u16) -> Arc<Self> {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let world = World {
            server_name: "localhost".into(),
            ..World::default()
        };
        let inner = Arc::new(Inner {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            world: Mutex::new(world),
            faults: Mutex::default(),
            log: Mutex::default(),
            appservice: Mutex::default(),
            double_puppet_token: Mutex::default(),
            pushing: Mutex::new(true),
            pushed: Notify::new(),
            acked: Notify::new(),
        });
        tokio::spawn(pusher::run(Arc::downgrade(&inner)));
        let hs = Arc::new(Self {
            port,
            inner,
            handle: Mutex::default(),
        });
        hs.up();
        hs
    }

    /// Its Client-Server base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its server name (`localhost`).
    pub fn server_name(&self) -> String {
        self.inner.world.lock().unwrap().server_name.clone()
    }

    /// Registers the appservice: its tokens, where it listens, its bot and ghost prefix
    /// (what its registration's namespaces say).
    pub fn register_appservice(
        &self,
        url: &str,
        as_token: &str,
        hs_token: &str,
        bot_localpart: &str,
        ghost_prefix: &str,
    ) {
        let server_name = self.server_name();
        let appservice = Appservice {
            url: url.to_owned(),
            as_token: as_token.to_owned(),
            hs_token: hs_token.to_owned(),
            bot: format!("@{bot_localpart}:{server_name}"),
            ghost_prefix: ghost_prefix.to_owned(),
            server_name,
        };
        let check = appservice.clone();
        let mut world = self.inner.world.lock().unwrap();
        world.interested = Some(Box::new(move |user| check.is_own(user)));
        world.registered.insert(appservice.bot.clone());
        *self.inner.appservice.lock().unwrap() = Some(appservice);
    }

    /// Registers a double-puppet appservice (no URL, a non-exclusive namespace of every user
    /// of the server) and returns its secret as `double_puppet.secrets` takes it,
    /// `as_token:<token>`. The same one each time until revoked.
    pub fn double_puppet_secret(&self) -> String {
        let mut token = self.inner.double_puppet_token.lock().unwrap();
        let token = token.get_or_insert_with(|| format!("dp_{}", self.inner.id));
        format!("as_token:{token}")
    }

    /// Removes the double-puppet appservice, as an operator removing its registration does:
    /// its token is refused from now on.
    pub fn revoke_double_puppet(&self) {
        *self.inner.double_puppet_token.lock().unwrap() = None;
    }

    /// Whether events are pushed to the appservice (on by default). Off, they wait.
    pub fn set_pushing(&self, on: bool) {
        *self.inner.pushing.lock().unwrap() = on;
        self.inner.pushed.notify_one();
    }

    /// Rooms spring into being (public, empty) when first named, instead of `M_NOT_FOUND`:
    /// for tests that push hand-written events into rooms the fake never saw.
    pub fn open_rooms(&self) {
        self.inner.world.lock().unwrap().open_rooms = true;
    }

    /// (Re)starts serving on the same port.
    pub fn up(&self) {
        let data = web::Data::new(self.inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .configure(routes_config)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", self.port))
        .expect("the fake homeserver's port is free")
        .run();
        *self.handle.lock().unwrap() = Some(server.handle());
        tokio::spawn(server);
    }

    /// Stops serving: connections are refused until [`up`](Self::up). Transactions still
    /// go out.
    pub async fn down(&self) {
        let handle = self.handle.lock().unwrap().take();
        if let Some(h) = handle {
            h.stop(false).await;
        }
    }

    // ----- acting as real users -----

    /// Acts as the real (non-appservice) user `@localpart:localhost`, registering it on
    /// first use.
    pub fn user(self: &Arc<Self>, localpart: &str) -> MatrixUser {
        MatrixUser::new(self.clone(), localpart)
    }

    // ----- what there is to see -----

    /// A room's whole timeline, in order.
    pub fn timeline(&self, room_id: &str) -> Vec<RoomEvent> {
        let world = self.inner.world.lock().unwrap();
        world
            .rooms
            .get(room_id)
            .map(|r| r.timeline.clone())
            .unwrap_or_default()
    }

    /// A room's messages (`m.room.message`, edits included), in order.
    pub fn messages(&self, room_id: &str) -> Vec<RoomEvent> {
        self.timeline(room_id)
            .into_iter()
            .filter(|e| e.event_type == "m.room.message")
            .collect()
    }

    /// One event by ID, wherever it is.
    pub fn event(&self, event_id: &str) -> Option<RoomEvent> {
        let world = self.inner.world.lock().unwrap();
        world
            .rooms
            .values()
            .flat_map(|r| r.timeline.iter())
            .find(|e| e.event_id == event_id)
            .cloned()
    }

    /// Members of a room by membership (`join`, `invite`, `leave`, `ban`).
    pub fn members(&self, room_id: &str) -> BTreeMap<String, String> {
        let world = self.inner.world.lock().unwrap();
        world
            .rooms
            .get(room_id)
            .map(|r| r.members())
            .unwrap_or_default()
    }

    /// The content of a room's state event.
    pub fn state(&self, room_id: &str, event_type: &str, state_key: &str) -> Option<Value> {
        let world = self.inner.world.lock().unwrap();
        world
            .rooms
            .get(room_id)?
            .state_content(event_type, state_key)
            .cloned()
    }

    /// A user's power level in a room.
    pub fn power_level(&self, room_id: &str, user_id: &str) -> i64 {
        let world = self.inner.world.lock().unwrap();
        world.rooms.get(room_id).map_or(0, |r| r.power_of(user_id))
    }

    /// The rooms where `user_id` has `membership`.
    pub fn rooms_of(&self, user_id: &str, membership: &str) -> Vec<String> {
        let world = self.inner.world.lock().unwrap();
        world
            .rooms
            .iter()
            .filter(|(_, r)| r.membership(user_id) == Some(membership))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The room an alias points at.
    pub fn room_by_alias(&self, alias: &str) -> Option<String> {
        self.inner.world.lock().unwrap().aliases.get(alias).cloned()
    }

    /// A user's global displayname.
    pub fn displayname(&self, user_id: &str) -> Option<String> {
        let world = self.inner.world.lock().unwrap();
        world.profiles.get(user_id)?.displayname.clone()
    }

    /// Whether the appservice registered `user_id`.
    pub fn is_registered(&self, user_id: &str) -> bool {
        self.inner
            .world
            .lock()
            .unwrap()
            .registered
            .contains(user_id)
    }

    /// Every distinct message event the appservice sent, in order (its retries and replays
    /// of the same request path are one).
    pub fn sent(&self) -> Vec<RoomEvent> {
        self.inner.log.lock().unwrap().sent.clone()
    }

    /// When each message send attempt arrived.
    pub fn send_attempts(&self) -> Vec<std::time::Instant> {
        self.inner.log.lock().unwrap().attempts.clone()
    }

    /// Rooms the appservice joined, one entry per join call.
    pub fn joins(&self) -> Vec<String> {
        self.inner.log.lock().unwrap().joins.clone()
    }

    /// How many `org.matrix.dummy_event`s the appservice sent.
    pub fn dummy_events(&self) -> usize {
        self.inner.log.lock().unwrap().dummy_events
    }

    /// How many profile writes the appservice made.
    pub fn profile_writes(&self) -> usize {
        self.inner.log.lock().unwrap().profile_writes
    }

    /// To-device messages the appservice sent: (event type, body).
    pub fn to_device(&self) -> Vec<(String, Value)> {
        self.inner.log.lock().unwrap().to_device.clone()
    }

    /// Events queued for the appservice and not yet acknowledged.
    pub fn unpushed(&self) -> usize {
        self.inner.world.lock().unwrap().to_push.len()
    }

    /// Waits until every event queued so far was acknowledged by the appservice.
    pub async fn wait_pushed(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.unpushed() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the appservice did not take {} queued events within {timeout:?}",
                self.unpushed()
            );
            let _ =
                tokio::time::timeout(Duration::from_millis(20), self.inner.acked.notified()).await;
        }
    }

    /// Waits until an event of `room_id` matches `pred` and returns it; panics after
    /// `timeout` with `what` and the room's messages.
    pub async fn wait_for(
        &self,
        room_id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&RoomEvent) -> bool,
    ) -> RoomEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.timeline(room_id).into_iter().find(|e| pred(e)) {
                return e;
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .messages(room_id)
                    .iter()
                    .map(|e| format!("{}: {}", e.sender, e.body().unwrap_or("")))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what} in {room_id}; messages: {seen:#?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for a message in `room_id` from `sender` whose body is `body`.
    pub async fn wait_for_message(&self, room_id: &str, sender: &str, body: &str) -> RoomEvent {
        let what = format!("{body:?} from {sender}");
        self.wait_for(room_id, &what, Duration::from_secs(10), |e| {
            e.event_type == "m.room.message" && e.sender == sender && e.body() == Some(body)
        })
        .await
    }

    // ----- faults -----

    /// Scripts the next message send attempts' fates, in order.
    pub fn fault(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.faults.lock().unwrap().sends.extend(faults);
    }

    /// Refuses (or, with `false`, accepts again) `user_id`'s message sends with Synapse's
    /// 403 "not in room", whatever its membership.
    pub fn refuse_not_in_room(&self, user_id: &str, refuse: bool) {
        let mut faults = self.inner.faults.lock().unwrap();
        if refuse {
            faults.not_in_room.insert(user_id.to_owned());
        } else {
            faults.not_in_room.remove(user_id);
        }
    }

    /// Answers (or, with `false`, stops answering) every message send into `room_id` with 503.
    pub fn block_room(&self, room_id: &str, block: bool) {
        let mut faults = self.inner.faults.lock().unwrap();
        if block {
            faults.blocked_rooms.insert(room_id.to_owned());
        } else {
            faults.blocked_rooms.remove(room_id);
        }
    }

    /// Answers the startup ping with `status` and `body` instead of pinging the appservice.
    pub fn answer_ping_with(&self, status: u16, body: Value) {
        self.inner.faults.lock().unwrap().ping_answer = Some((status, body));
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl Drop for TestHomeserver {
    fn drop(&mut self) {
        if let Some(h) = self.handle.lock().unwrap().take() {
            drop(h.stop(false));
        }
    }
}

fn routes_config(cfg: &mut web::ServiceConfig) {
    use routes::*;
    const C: &str = "/_matrix/client/v3";
    cfg.route(
        "/_matrix/client/v1/appservice/{id}/ping",
        web::post().to(ping),
    )
    .route(&format!("{C}/register"), web::post().to(register))
    .route(&format!("{C}/account/whoami"), web::get().to(whoami))
    .route(&format!("{C}/createRoom"), web::post().to(create_room))
    .route(&format!("{C}/join/{{room}}"), web::post().to(join))
    .route(&format!("{C}/rooms/{{room}}/join"), web::post().to(join))
    .route(
        &format!("{C}/rooms/{{room}}/send/{{type}}/{{txn}}"),
        web::put().to(send),
    )
    .route(
        &format!("{C}/rooms/{{room}}/redact/{{event}}/{{txn}}"),
        web::put().to(redact),
    )
    .route(
        &format!("{C}/rooms/{{room}}/state/{{type}}/{{key}}"),
        web::put().to(put_state),
    )
    .route(
        &format!("{C}/rooms/{{room}}/state/{{type}}"),
        web::put().to(put_state_no_key),
    )
    .route(
        &format!("{C}/rooms/{{room}}/state/{{type}}/{{key}}"),
        web::get().to(get_state),
    )
    .route(
        &format!("{C}/rooms/{{room}}/state/{{type}}"),
        web::get().to(get_state_no_key),
    )
    .route(
        &format!("{C}/rooms/{{room}}/state"),
        web::get().to(all_state),
    )
    .route(
        &format!("{C}/rooms/{{room}}/joined_members"),
        web::get().to(joined_members),
    )
    .route(
        &format!("{C}/rooms/{{room}}/members"),
        web::get().to(members),
    )
    .route(
        &format!("{C}/rooms/{{room}}/messages"),
        web::get().to(messages),
    )
    .route(
        &format!("{C}/rooms/{{room}}/typing/{{user}}"),
        web::put().to(accepted),
    )
    .route(
        &format!("{C}/rooms/{{room}}/receipt/{{type}}/{{event}}"),
        web::post().to(accepted),
    )
    .route(
        &format!("{C}/rooms/{{room}}/{{action}}"),
        web::post().to(membership),
    )
    .route(
        &format!("{C}/profile/{{user}}/{{field}}"),
        web::get().to(get_profile_field),
    )
    .route(
        &format!("{C}/profile/{{user}}/{{field}}"),
        web::put().to(set_profile_field),
    )
    .route(
        &format!("{C}/presence/{{user}}/status"),
        web::put().to(accepted),
    )
    .route(
        &format!("{C}/sendToDevice/{{type}}/{{txn}}"),
        web::put().to(send_to_device),
    )
    .route(&format!("{C}/devices/{{device}}"), web::put().to(accepted))
    .route(
        &format!("{C}/directory/list/appservice/{{network}}/{{room}}"),
        web::put().to(accepted),
    )
    .route("/_matrix/media/v3/upload", web::post().to(upload))
    .route(
        "/_matrix/client/v1/media/download/{server}/{id}",
        web::get().to(download),
    )
    .default_service(web::to(unrecognized));
}
