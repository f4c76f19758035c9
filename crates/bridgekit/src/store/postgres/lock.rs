//! The schema's lock: one session advisory lock, held on a connection of its own for as
//! long as the store is open, so two copies of a bridge never share its queues.
//!
//! A hot standby waits for the lock inside PostgreSQL (`pg_advisory_lock` blocks until the
//! holder's session ends) and so takes over the moment the active copy's connection closes.
//! The connection asks the server to probe it with TCP keepalives every second after two idle
//! seconds, so a copy whose machine vanished loses the lock within about five seconds
//! instead of the kernel's two hours; the same probes on the bridge's side tell the active
//! copy that it lost the lock, and it stops ([`SchemaLock::lost`]).

use std::time::Duration;

use tokio_postgres::NoTls;

use super::{StoreError, db};

/// How long a refusing open waits for the lock before calling it held: a bridge restarted at
/// once may find its previous connection not yet closed.
const LOCK_WAIT: Duration = Duration::from_millis(1500);

/// Idle seconds before the first keepalive probe, seconds between probes, probes lost
/// before the connection counts as dead: about five seconds from a vanished peer to a
/// released lock, on either side.
const KEEPALIVE_IDLE: u32 = 2;
const KEEPALIVE_INTERVAL: u32 = 1;
const KEEPALIVE_COUNT: u32 = 3;

/// What to do when another process holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WhenHeld {
    /// Fail with [`StoreError::Locked`] (after [`LOCK_WAIT`]).
    Refuse,
    /// Wait as a standby until the holder stops.
    Wait,
}

/// The held lock. Dropping it closes the connection, which releases the lock.
pub(super) struct SchemaLock {
    pub(super) client: tokio_postgres::Client,
    closed: tokio::sync::watch::Receiver<bool>,
    location: String,
}

impl SchemaLock {
    /// Connects and takes the lock on `schema`.
    pub(super) async fn take(
        config: &tokio_postgres::Config,
        schema: &str,
        location: &str,
        when_held: WhenHeld,
    ) -> Result<Self, StoreError> {
        let mut config = config.clone();
        let probes = format!(
            "-c tcp_keepalives_idle={KEEPALIVE_IDLE} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL} -c tcp_keepalives_count={KEEPALIVE_COUNT}"
        );
        let options = match config.get_options() {
            Some(existing) => format!("{existing} {probes}"),
            None => probes,
        };
        config
            .options(&options)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(KEEPALIVE_IDLE.into()))
            .keepalives_interval(Duration::from_secs(KEEPALIVE_INTERVAL.into()))
            .keepalives_retries(KEEPALIVE_COUNT);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Open(format!("cannot connect for {location}: {e}")))?;
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                let error = db(error);
                tracing::warn!(%error, "the store's lock connection failed");
            }
            let _ = closed_tx.send(true);
        });
        let lock = Self {
            client,
            closed,
            location: location.to_owned(),
        };
        let key = format!("bridgekit:{schema}");
        if lock.try_for(&key, LOCK_WAIT).await? {
            return Ok(lock);
        }
        match when_held {
            WhenHeld::Refuse => Err(StoreError::Locked {
                location: location.to_owned(),
            }),
            WhenHeld::Wait => {
                tracing::info!(
                    store = location,
                    "standby: another copy of this bridge holds the store; waiting to take over"
                );
                lock.client
                    .execute("SELECT pg_advisory_lock(hashtext($1))", &[&key])
                    .await
                    .map_err(|e| {
                        StoreError::Open(format!(
                            "lost the database while waiting for {location}: {}",
                            db(e)
                        ))
                    })?;
                tracing::info!(store = location, "standby: the store is free; taking over");
                Ok(lock)
            }
        }
    }

    /// Tries to take the lock for up to `wait`.
    async fn try_for(&self, key: &str, wait: Duration) -> Result<bool, StoreError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let row = self
                .client
                .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
                .await
                .map_err(db)?;
            if row.get::<_, bool>(0) {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Completes when the lock's connection closed: the lock is gone, and another copy may
    /// hold it now.
    pub(super) async fn lost(&self) -> StoreError {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
        StoreError::LockLost {
            location: self.location.clone(),
        }
    }
}
