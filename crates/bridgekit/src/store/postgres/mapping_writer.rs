//! Message mappings written in groups: every bridged message stores one or two mappings, each
//! a durable commit of its own when written alone. Inserts are queued instead, and one task
//! writes everything queued so far in one statement (one commit, one WAL flush) while the
//! next group gathers, then answers each caller. Alone, an insert costs what it did; under
//! load a group of handled messages costs one round trip. Each caller still hears about its
//! own mapping: one that hit an existing row is checked against it on its own, exactly as a
//! single insert is (same mapping: fine; another: a conflict).

use std::collections::HashMap;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::messages::insert_message;
use crate::store::StoreError;
use crate::store::records::MessageMapping;

/// Most mappings in one statement.
const GROUP: usize = 512;

struct Job {
    mapping: MessageMapping,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue of mapping inserts; its task ends when this is dropped.
pub(super) struct MappingWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl MappingWriter {
    /// Starts the task, which takes a pooled connection per group.
    pub(super) fn start(pool: Pool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, queue));
        Self { jobs }
    }

    /// Stores `mapping` durably (returns once committed), with the checks of a single insert.
    pub(super) async fn insert(&self, mapping: &MessageMapping) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            mapping: mapping.clone(),
            done,
        };
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the task writing message mappings has stopped".into())
}

async fn run(pool: Pool, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(GROUP);
    while queue.recv_many(&mut jobs, GROUP).await > 0 {
        let group = std::mem::take(&mut jobs);
        match pool.get().await {
            Ok(client) => write_group(&client, group).await,
            Err(error) => {
                let reason = format!("no database connection: {error}");
                for job in group {
                    let _ = job.done.send(Err(StoreError::Database(reason.clone())));
                }
            }
        }
    }
}

/// The identity of a row, as the insert returns it.
type RowKey = (String, String, String, String);

fn key_of(m: &MessageMapping) -> RowKey {
    (
        m.room_id.to_string(),
        m.remote_id.to_string(),
        m.part.to_string(),
        m.event_id.to_string(),
    )
}

/// Inserts the group in one statement; a mapping that was not inserted (it hit a row) goes
/// through the single insert, which tells a repeat from a conflict.
async fn write_group(client: &deadpool_postgres::Client, group: Vec<Job>) {
    if group.len() == 1 {
        return one_by_one(client, group).await;
    }
    let mut columns: [Vec<String>; 4] = Default::default();
    let mut senders = Vec::with_capacity(group.len());
    let mut stamps = Vec::with_capacity(group.len());
    for job in &group {
        let (room, remote, part, event) = key_of(&job.mapping);
        for (column, value) in columns.iter_mut().zip([room, remote, part, event]) {
            column.push(value);
        }
        senders.push(job.mapping.sender.as_ref().map(|s| s.to_string()));
        stamps.push(job.mapping.timestamp.map(|t| i64::from(t.get())));
    }
    let sql = "INSERT INTO messages (room_id, remote_id, part, event_id, sender, ts)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])
        ON CONFLICT DO NOTHING RETURNING room_id, remote_id, part, event_id";
    let [rooms, remotes, parts, events] = &columns;
    let inserted = super::rows(
        client,
        sql,
        &[rooms, remotes, parts, events, &senders, &stamps],
    )
    .await;
    let mut inserted: HashMap<RowKey, usize> = match inserted {
        Ok(rows) => {
            let mut counts = HashMap::with_capacity(rows.len());
            for row in rows {
                let key = (row.get(0), row.get(1), row.get(2), row.get(3));
                *counts.entry(key).or_default() += 1;
            }
            counts
        }
        Err(error) => {
            // Each mapping then gets its own answer (and error) from a single insert.
            tracing::warn!(%error, count = group.len(), "a group of message mappings failed; writing them one by one");
            return one_by_one(client, group).await;
        }
    };
    for job in group {
        let result = match inserted.get_mut(&key_of(&job.mapping)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ok(())
            }
            _ => insert_message(client, &job.mapping).await,
        };
        let _ = job.done.send(result);
    }
}

async fn one_by_one(client: &deadpool_postgres::Client, group: Vec<Job>) {
    for job in group {
        let result = insert_message(client, &job.mapping).await;
        let _ = job.done.send(result);
    }
}
