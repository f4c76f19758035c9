//! The logins running in this process: each login's network client and last state (for the
//! gauge), and the login conversations in progress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::OwnedUserId;

use super::client::{LoginContext, NetworkClient};
use super::commands::Slot;
use crate::bridge::{Bridge, BridgeError};
use crate::context::BridgeContext;
use crate::ids::LoginId;
use crate::store::{LoginRecord, LoginState};

/// The running logins. Lives in the bridge's context.
#[derive(Default)]
pub(crate) struct Registry {
    clients: Mutex<HashMap<LoginId, Arc<dyn NetworkClient>>>,
    states: Mutex<HashMap<LoginId, LoginState>>,
    /// Login conversations in progress, one per Matrix user.
    pub(super) conversations: Mutex<HashMap<OwnedUserId, Slot>>,
    /// Each login's pace towards its network.
    paces: Mutex<HashMap<LoginId, Arc<super::backoff::Pace>>>,
    /// The bridge, for starting the client of a login completed outside a handler.
    bridge: std::sync::OnceLock<std::sync::Weak<dyn Bridge>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Remembers the bridge (weakly: it may hold the context that holds this).
    pub(crate) fn set_bridge(&self, bridge: &Arc<dyn Bridge>) {
        let _ = self.bridge.set(Arc::downgrade(bridge));
    }

    /// The bridge, while it runs.
    pub(super) fn bridge(&self) -> Result<Arc<dyn Bridge>, BridgeError> {
        self.bridge
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| "the bridge is stopping".into())
    }

    /// The running client of `login`, if it is loaded.
    pub(crate) fn client(&self, login: &LoginId) -> Option<Arc<dyn NetworkClient>> {
        lock(&self.clients).get(login).cloned()
    }

    pub(super) fn insert(&self, login: LoginId, client: Arc<dyn NetworkClient>, state: LoginState) {
        lock(&self.clients).insert(login.clone(), client);
        self.set_state(&login, state);
    }

    pub(super) fn remove(&self, login: &LoginId) -> Option<Arc<dyn NetworkClient>> {
        if let Some(old) = lock(&self.states).remove(login) {
            gauge(old).decrement(1.0);
        }
        lock(&self.paces).remove(login);
        lock(&self.clients).remove(login)
    }

    /// The pace of `login`'s sends, at `rate` a second.
    pub(super) fn pace(&self, login: &LoginId, rate: f64) -> Arc<super::backoff::Pace> {
        lock(&self.paces)
            .entry(login.clone())
            .or_insert_with(|| Arc::new(super::backoff::Pace::new(rate)))
            .clone()
    }

    /// Every running client (to disconnect them at shutdown).
    pub(crate) fn all(&self) -> Vec<Arc<dyn NetworkClient>> {
        lock(&self.clients).values().cloned().collect()
    }

    /// A running login's last state.
    pub(crate) fn state(&self, login: &LoginId) -> Option<LoginState> {
        lock(&self.states).get(login).copied()
    }

    /// Records a login's state and moves it between the gauge's states.
    pub(crate) fn set_state(&self, login: &LoginId, state: LoginState) {
        let old = lock(&self.states).insert(login.clone(), state);
        if old != Some(state) {
            if let Some(old) = old {
                gauge(old).decrement(1.0);
            }
            gauge(state).increment(1.0);
        }
    }
}

/// `bridgekit_logins{state}`: how many logins are in each state. Moved by increments, so
/// several bridges in one process (tests, embedding) add up instead of overwriting.
fn gauge(state: LoginState) -> metrics::Gauge {
    metrics::gauge!("bridgekit_logins", "state" => state.as_str())
}

impl Drop for Registry {
    /// A stopped bridge's logins leave the gauge.
    fn drop(&mut self) {
        for state in lock(&self.states).values() {
            gauge(*state).decrement(1.0);
        }
    }
}

/// Makes the client of a stored login, registers it and starts connecting it.
pub(crate) async fn start_login(
    bridge: &(impl Bridge + ?Sized),
    ctx: &BridgeContext,
    record: &LoginRecord,
) -> Result<(), BridgeError> {
    let login = LoginContext::new(ctx.clone(), record.id.clone(), record.user_id.clone());
    let client = bridge.load_login(ctx, record).await?;
    ctx.logins()
        .insert(record.id.clone(), client.clone(), record.state);
    ctx.puppets()
        .remember_login(record.remote_id.clone(), record.user_id.clone());
    client.connect(&login).await
}

/// Reconnects every stored login, paced (see `backoff`), in the background.
pub(crate) fn reconnect_all(bridge: Arc<dyn Bridge>, ctx: BridgeContext) {
    tokio::spawn(async move {
        let logins = match ctx.store().all_logins().await {
            Ok(logins) => logins,
            Err(error) => {
                tracing::error!(%error, "cannot read the stored logins; none is reconnected");
                return;
            }
        };
        if logins.is_empty() {
            return;
        }
        tracing::info!(logins = logins.len(), "reconnecting stored logins");
        let started = tokio::time::Instant::now();
        for (n, record) in logins.iter().enumerate() {
            tokio::select! {
                _ = tokio::time::sleep_until(started + super::backoff::startup_offset(n)) => {}
                _ = ctx.outbox().stopped() => return,
            }
            // Read again: the user may have logged out meanwhile.
            let record = match ctx.store().login(&record.id).await {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, login = %record.id, "cannot read a stored login");
                    continue;
                }
            };
            let record = &record;
            if let Err(error) = start_login(&*bridge, &ctx, record).await {
                tracing::warn!(%error, login = %record.id, "a stored login could not be started");
                let login =
                    LoginContext::new(ctx.clone(), record.id.clone(), record.user_id.clone());
                let _ = login
                    .set_state(LoginState::UnknownError, Some(error.to_string()))
                    .await;
            }
        }
    });
}
