//! Running a bridge: open the store, start the HTTP server, check the homeserver, hand the
//! inbox left by the last run to the bridge, then serve until SIGTERM or Ctrl-C.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ruma::UserId;

use crate::appservice::{AppState, serve};
use crate::bridge::Bridge;
use crate::client::{HomeserverClient, RetryPolicy, TxnIds};
use crate::config::Config;
use crate::context::{BridgeContext, Parts};
use crate::inbox_handler::InboxHandler;
use crate::intake::Intake;
use crate::keyed_queue::KeyedQueue;
use crate::registration::Registration;

/// Why a bridge stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The config or registration is wrong.
    #[error(transparent)]
    Registration(#[from] crate::registration::RegistrationError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr} (appservice.listen): {reason}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The homeserver check failed.
    #[error(transparent)]
    Startup(#[from] crate::startup_check::StartupError),
    /// The bridge's own start failed.
    #[error("the bridge failed to start: {0}")]
    Bridge(crate::BridgeError),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Runs `bridge` with `config` until the process gets SIGTERM or Ctrl-C.
pub async fn run(bridge: impl Bridge, config: Config) -> Result<(), RunError> {
    run_until(bridge, config, shutdown_signal()).await
}

/// Runs `bridge` with `config` until `shutdown` completes (for embedding and tests).
///
/// With `store.standby`, a copy that finds the store held by another answers on its
/// listener as a standby (ready and active `503`) until the other stops, then takes over.
pub async fn run_until(
    bridge: impl Bridge,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    if !config.store.standby {
        let store = crate::store::open(&config.store.location).await?;
        tracing::info!(store = %config.store.location, "store open");
        return run_on(bridge, config, store, None, shutdown).await;
    }
    // A misconfigured standby says so now, not when it takes over.
    Registration::load(&config.appservice.registration)?
        .check_against(&config, &config.appservice.registration)?;
    let listener = bind(config.appservice.listen)?;
    let waiting = listener
        .try_clone()
        .and_then(crate::appservice::standby::serve)
        .map_err(|e| RunError::Listen {
            addr: config.appservice.listen,
            reason: e.to_string(),
        })?;
    let waiting_handle = waiting.handle();
    let waiting_task = tokio::spawn(waiting);
    tokio::pin!(shutdown);
    let store = tokio::select! {
        store = crate::store::open_standby(&config.store.location) => Some(store),
        () = &mut shutdown => None,
    };
    waiting_handle.stop(true).await;
    let _ = waiting_task.await;
    let Some(store) = store else {
        tracing::info!("stopped while waiting as a standby");
        return Ok(());
    };
    let store = store?;
    tracing::info!(store = %config.store.location, "store open; this copy is active now");
    run_on(bridge, config, store, Some(listener), shutdown).await
}

fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).map_err(|e| RunError::Listen {
        addr,
        reason: e.to_string(),
    })
}

/// Like [`run_until`], on a store the caller opened: a third-party [`Store`](crate::Store)
/// backend, or a wrapper that injects faults in tests. `config.store` is not used.
pub async fn run_with_store(
    bridge: impl Bridge,
    config: Config,
    store: Arc<dyn crate::store::Backend>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    run_on(bridge, config, store, None, shutdown).await
}

/// Runs on `store`, serving on `listener` (bound from the config when `None`).
async fn run_on(
    bridge: impl Bridge,
    config: Config,
    store: Arc<dyn crate::store::Backend>,
    listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    crate::metrics::install();
    let _housekeeping = crate::housekeeping::start();
    let registration = Registration::load(&config.appservice.registration)?;
    registration.check_against(&config, &config.appservice.registration)?;
    let boot = store.next_boot().await?;
    let client = HomeserverClient::new(
        &config.homeserver.url,
        &registration.as_token,
        RetryPolicy {
            request_timeout: config.homeserver.request_timeout,
            ..RetryPolicy::default()
        },
    )
    .map_err(|e| RunError::Other(e.to_string()))?;
    let bot = UserId::parse(format!(
        "@{}:{}",
        config.appservice.bot, config.homeserver.server_name
    ))
    .map_err(|e| RunError::Other(format!("appservice.bot does not make a valid user ID: {e}")))?;
    let ctx = BridgeContext::new(
        Parts {
            client,
            store: store.clone(),
            bot,
            server_name: config.homeserver.server_name.clone(),
            ghost_prefix: config.appservice.ghost_prefix.clone(),
            txn_ids: TxnIds::new(boot),
            appservice_id: config.appservice.id.clone(),
            options: config.bridge.clone(),
            network: config.network.clone(),
        },
        tokio::runtime::Handle::current(),
    );
    let bridge: Arc<dyn Bridge> = Arc::new(bridge);
    ctx.logins().set_bridge(&bridge);
    let (started_tx, started) = tokio::sync::watch::channel(false);
    let waiting_to_retry = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let router = Arc::new(InboxHandler {
        bridge: bridge.clone(),
        ctx: ctx.clone(),
        started,
        waiting_to_retry: waiting_to_retry.clone(),
    });
    let dispatcher = KeyedQueue::new(
        router,
        tokio::runtime::Handle::current(),
        crate::room_order::inbox(config.bridge.sends_in_flight_per_room),
    );

    // What the last run acknowledged but did not finish goes first, in its original order.
    let pending = store.pending_items().await?;
    if !pending.is_empty() {
        tracing::info!(
            items = pending.len(),
            "resuming events acknowledged before the last stop"
        );
    }
    for (seq, item) in pending {
        dispatcher.dispatch(&item.queue.clone(), (seq, item));
    }
    let intake = Intake::start(store.clone(), dispatcher.clone());

    let state = Arc::new(AppState {
        hs_token: registration.hs_token.clone(),
        intake,
        bridge: bridge.clone(),
        ctx: ctx.clone(),
        ready: false.into(),
        last_ping: Default::default(),
        behind: false.into(),
        provisioning: crate::provisioning::Provisioning::new(
            config
                .provisioning
                .resolve_secret()
                .map_err(RunError::Other)?,
        ),
    });
    let addr = config.appservice.listen;
    let listener = match listener {
        Some(listener) => listener,
        None => bind(addr)?,
    };
    let server = serve(state.clone(), listener).map_err(|e| RunError::Listen {
        addr,
        reason: e.to_string(),
    })?;
    let server_handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(%addr, "listening for the homeserver");

    let serving = async {
        let ping_state = state.clone();
        let took = crate::startup_check::check_homeserver(&ctx, &config, move |id| {
            ping_state
                .last_ping
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref()
                == Some(id)
        })
        .await?;
        tracing::info!(
            round_trip_ms = took.as_millis() as u64,
            "homeserver and bridge reach each other"
        );
        start_encryption(&ctx, &config).await?;
        let resumed = ctx
            .outbox()
            .resume(&*store)
            .await
            .map_err(|e| RunError::Other(e.to_string()))?;
        if resumed > 0 {
            tracing::info!(
                sends = resumed,
                "resuming sends queued before the last stop"
            );
        }
        let resumed = ctx.remote_queue().resume(&*store).await?;
        if resumed > 0 {
            tracing::info!(
                events = resumed,
                "resuming remote events handed over before the last stop"
            );
        }
        bridge.start(&ctx).await.map_err(RunError::Bridge)?;
        crate::logins::registry::reconnect_all(bridge.clone(), ctx.clone());
        let _ = started_tx.send(true);
        state.ready.store(true, Ordering::Release);
        tracing::info!(bot = %ctx.bot_user_id(), "bridge ready");
        shutdown.await;
        Ok(())
    };
    // A lost lock ends the run at once: a standby may be writing the store already.
    let result = tokio::select! {
        result = serving => result,
        lost = store.lock_lost() => Err(RunError::Store(lost)),
    };
    let lock_lost = matches!(
        result,
        Err(RunError::Store(crate::store::StoreError::LockLost { .. }))
    );

    tracing::info!("stopping: no new transactions are accepted");
    server_handle.stop(!lock_lost).await;
    let _ = server_task.await;
    if lock_lost {
        ctx.outbox().stop();
        return result;
    }
    // Give in-flight handlers and sends a moment (not those waiting to retry); whatever is
    // unfinished stays in the inbox and the outbox for next time.
    for _ in 0..50 {
        if dispatcher.active_queues() <= waiting_to_retry.load(Ordering::SeqCst)
            && ctx.remote_queue().active() == 0
            && ctx.outbox().active_rooms() == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctx.outbox().stop();
    if result.is_ok() {
        for client in ctx.logins().all() {
            client.disconnect().await;
        }
        bridge.stop(&ctx).await;
    }
    store.flush().await?;
    result
}

/// With `encryption.allow`: the bot's device, then the check that the homeserver delivers
/// what it needs (before any queued send, so none goes out unencrypted by mistake).
async fn start_encryption(ctx: &BridgeContext, config: &Config) -> Result<(), RunError> {
    let options = &config.bridge.encryption;
    if !options.allow {
        return Ok(());
    }
    #[cfg(feature = "encryption")]
    {
        let encryption = crate::encryption::Encryption::start(ctx, options)
            .await
            .map_err(RunError::Other)?;
        let device_id = encryption.device_id().to_owned();
        let _ = ctx.shared_encryption().set(Arc::new(encryption));
        ctx.homeserver_support()
            .check(ctx, &device_id)
            .await
            .map_err(RunError::Other)?;
        Ok(())
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = ctx;
        Err(RunError::Other(
            "encryption.allow is set but this build has no encryption: build bridgekit with its `encryption` feature (on by default)".into(),
        ))
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can listen for SIGTERM");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
