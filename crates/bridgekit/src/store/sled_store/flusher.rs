//! Group flush: every caller that needs its writes durable asks the flusher thread, which
//! drains all waiting requests and serves them with one `flush` (one fsync). A write made
//! before the request is covered by the flush that answers it. Under load many sends share
//! one fsync instead of paying one each.
//!
//! sled's `flush` ends in `sync_file_range`, which writes the pages but neither flushes the
//! disk's write cache nor the file's size: a power cut could still lose what was
//! acknowledged. So each flush is followed by `fdatasync` on sled's log file (about 0.3 ms
//! on this machine's disk).

use std::sync::mpsc;

use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<(), String>>;

/// Handle to the flusher thread; it ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Flusher {
    requests: mpsc::Sender<Reply>,
}

impl Flusher {
    /// `log` is sled's log file (`<dir>/db`), synced after each flush.
    pub(crate) fn start(db: sled::Db, log: std::sync::Arc<std::fs::File>) -> Self {
        let (requests, rx) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name("bridgekit-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = db
                        .flush()
                        .map(|_| ())
                        .and_then(|_| log.sync_data().map_err(Into::into))
                        .map_err(|e| e.to_string());
                    for reply in waiting {
                        let _ = reply.send(result.clone());
                    }
                }
            })
            .expect("can spawn the flush thread");
        Self { requests }
    }

    /// Resolves once everything written before the call is on disk.
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.requests
            .send(reply)
            .map_err(|_| "the flush thread has stopped".to_owned())?;
        done.await
            .map_err(|_| "the flush thread has stopped".to_owned())?
    }
}
