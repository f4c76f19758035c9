//! The PostgreSQL backend: for several bridges in one database (one schema each), or a
//! bridge whose history outgrows an embedded store.
//!
//! Every statement runs through a small connection pool. Writes that must agree run in one
//! transaction; a commit is durable when it returns (PostgreSQL's default
//! `synchronous_commit`), so acknowledged transactions and queued sends survive a crash of
//! the bridge or of the database server. One extra connection holds a session advisory
//! lock on the schema for as long as the store is open, so a second copy of the bridge is
//! refused instead of sharing the queues, or waits as a hot standby
//! ([`open_standby`](PostgresStore::open_standby)).

mod completions;
mod crypto_state;
mod export;
mod ghosts;
mod id_columns;
mod inbox;
mod lock;
mod mapping_writer;
mod messages;
mod outbox;
mod portals;
mod reactions;
mod read_cache;
mod remote_queue;
mod store_impl;
mod upgrade;
mod users;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::StoreError;
use lock::{SchemaLock, WhenHeld};

/// Connections in the pool: enough for per-room concurrency, small enough for a shared server.
const POOL_SIZE: usize = 8;

/// The PostgreSQL backend.
pub struct PostgresStore {
    pool: Pool,
    schema: String,
    /// Holds the schema's advisory lock; dropping it releases the lock.
    lock: SchemaLock,
    /// The per-message reads, answered from memory (coherent while the lock is held).
    cache: read_cache::ReadCache,
    /// Removals of handled items, made in groups.
    completions: completions::Completions,
    mappings: mapping_writer::MappingWriter,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (a `postgresql://` URL or libpq key=value string), creates or
    /// upgrades the tables in `schema`, and takes the schema's lock.
    ///
    /// Fails with [`StoreError::Locked`] when another running bridge uses the schema, and
    /// with [`StoreError::TooNew`] when a newer version wrote it.
    pub async fn open(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::open_with(url, schema, WhenHeld::Refuse).await
    }

    /// Like [`open`](Self::open), but while another bridge holds the schema, waits for it to
    /// stop (a hot standby) instead of failing.
    pub async fn open_standby(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::open_with(url, schema, WhenHeld::Wait).await
    }

    async fn open_with(url: &str, schema: &str, when_held: WhenHeld) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Open(format!(
                "store.postgres_url is not a valid connection string: {e}"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("bridgekit");
        }
        let location = format!("PostgreSQL schema {schema:?}");
        let lock = SchemaLock::take(&config, schema, &location, when_held).await?;
        upgrade::to_current(&lock.client, schema, &location).await?;

        // Every pooled connection works inside the bridge's schema.
        let options = match config.get_options() {
            Some(existing) => format!("{existing} -c search_path={schema}"),
            None => format!("-c search_path={schema}"),
        };
        config.options(&options);
        let completions = completions::Completions::start(&config, &location).await?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Open(e.to_string()))?;
        Ok(Self {
            mappings: mapping_writer::MappingWriter::start(pool.clone()),
            pool,
            schema: schema.to_owned(),
            lock,
            cache: read_cache::ReadCache::new(),
            completions,
        })
    }

    /// Creates `schema` at an older layout `version` and leaves it there (for upgrade tests).
    #[doc(hidden)]
    pub async fn create_at_version(
        url: &str,
        schema: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Open(format!("invalid connection string: {e}")))?;
        let client = connect(&config, schema).await?;
        upgrade::migrate(&client, schema, schema, version).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Database(format!("no database connection: {e}")))
    }
}

async fn connect(
    config: &tokio_postgres::Config,
    location: &str,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Open(format!("cannot connect for {location}: {e}")))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "a store connection closed");
        }
    });
    Ok(client)
}

/// A database error as ours: uniqueness violations are conflicts.
fn db(error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let detail = error
            .as_db_error()
            .and_then(|e| e.detail().map(str::to_owned))
            .unwrap_or_else(|| error.to_string());
        return StoreError::Conflict(detail);
    }
    let detail = match error.as_db_error() {
        Some(e) => format!("{}: {}", e.code().code(), e.message()),
        None => error.to_string(),
    };
    StoreError::Database(detail)
}

fn corrupt(table: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: table,
        reason: reason.to_string(),
    }
}

/// A `metadata` JSONB column's value: SQL `NULL` for JSON `null`.
fn metadata(value: &serde_json::Value) -> Option<&serde_json::Value> {
    (!value.is_null()).then_some(value)
}

/// An ID read from `table`, parsed with `parse`; a bad one is [`StoreError::Corrupt`].
fn parse<T>(
    table: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, ruma::IdParseError>,
) -> Result<T, StoreError> {
    parse(value).map_err(|e| corrupt(table, format!("{value:?}: {e}")))
}

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

/// Runs `sql` as a statement prepared once per connection (one round trip, not two).
async fn run(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(db)?;
    c.execute(&statement, params).await.map_err(db)
}

/// [`run`] returning every row.
async fn rows(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(db)?;
    c.query(&statement, params).await.map_err(db)
}

/// [`run`] returning at most one row.
async fn row_opt(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(db)?;
    c.query_opt(&statement, params).await.map_err(db)
}

/// [`run`] returning exactly one row.
async fn row(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<tokio_postgres::Row, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(db)?;
    c.query_one(&statement, params).await.map_err(db)
}
