//! Work done every few seconds for the process's own sake, on one background task that ends
//! with the run: free heap pages given back to the system ([`crate::memory::give_back`]),
//! and histogram samples folded into their buckets ([`crate::metrics::upkeep`]), which
//! otherwise pile up until the next `/metrics` scrape, for ever if nobody scrapes.

use std::time::Duration;

/// Often enough that neither builds up, rarely enough that the cost (a walk of the
/// allocator's free lists, a drain of the sample queues) is noise.
const EVERY: Duration = Duration::from_secs(10);

/// Starts the task; it stops when the returned guard is dropped.
pub(crate) fn start() -> impl Drop {
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    AbortOnDrop(tokio::spawn(async {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            // Both take locks the async workers also take: off those workers.
            let _ = tokio::task::spawn_blocking(|| {
                crate::metrics::upkeep();
                crate::memory::give_back();
            })
            .await;
        }
    }))
}
