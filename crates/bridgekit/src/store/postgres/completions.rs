//! Removing handled inbox items and applied remote events, in groups.
//!
//! A removal need not be durable at once (an item whose removal is lost is handled again,
//! which changes nothing), so removals do not each wait for a commit of their own: they are
//! queued, and one task deletes everything queued so far in one statement per table, on a
//! connection of its own whose commits do not wait for the WAL flush
//! (`synchronous_commit=off`). Under load that is one round trip per group of handled items
//! instead of one durable commit per item. Reads that count or list the queues wait for the
//! removals queued before them ([`Completions::settle`]), so nothing reads stale.

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// Most removals in one statement.
const GROUP: usize = 4096;

enum Job {
    Inbox(i64),
    Remote(i64),
    /// Answered once every removal queued before it was made.
    Settle(oneshot::Sender<()>),
}

/// The queue of removals; its task ends when this is dropped.
pub(super) struct Completions {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Completions {
    /// Connects (with `config`, which sets the schema's search path) and starts the task.
    pub(super) async fn start(
        config: &tokio_postgres::Config,
        location: &str,
    ) -> Result<Self, StoreError> {
        let mut config = config.clone();
        let options = format!(
            "{} -c synchronous_commit=off",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        let client = super::connect(&config, location).await?;
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(client, queue));
        Ok(Self { jobs })
    }

    pub(super) fn inbox_item(&self, seq: u64) -> Result<(), StoreError> {
        self.send(Job::Inbox(seq as i64))
    }

    pub(super) fn remote_event(&self, seq: u64) -> Result<(), StoreError> {
        self.send(Job::Remote(seq as i64))
    }

    /// Waits until every removal queued so far was made.
    pub(super) async fn settle(&self) -> Result<(), StoreError> {
        let (done, settled) = oneshot::channel();
        self.send(Job::Settle(done))?;
        settled.await.map_err(|_| stopped())
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the connection removing handled items has closed".into())
}

async fn run(client: tokio_postgres::Client, mut queue: mpsc::UnboundedReceiver<Job>) {
    let inbox = "DELETE FROM inbox WHERE seq = ANY($1)";
    let remote = "DELETE FROM remote_queue WHERE seq = ANY($1)";
    let mut jobs = Vec::with_capacity(GROUP);
    while queue.recv_many(&mut jobs, GROUP).await > 0 {
        let (mut items, mut events, mut settled) = (Vec::new(), Vec::new(), Vec::new());
        for job in jobs.drain(..) {
            match job {
                Job::Inbox(seq) => items.push(seq),
                Job::Remote(seq) => events.push(seq),
                Job::Settle(done) => settled.push(done),
            }
        }
        for (sql, seqs) in [(inbox, &items), (remote, &events)] {
            if seqs.is_empty() {
                continue;
            }
            if let Err(error) = client.execute(sql, &[seqs]).await {
                // Kept: they are handled again at the next start, which changes nothing.
                let error = super::db(error);
                tracing::warn!(%error, count = seqs.len(), "could not remove handled items");
            }
        }
        for done in settled {
            let _ = done.send(());
        }
    }
}
