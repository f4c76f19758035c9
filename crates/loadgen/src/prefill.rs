//! Fills the target's store before it starts, to measure cold start and memory with a
//! history: `--prefill-messages`, `--prefill-ghosts`, `--prefill-portals`.

use std::path::Path;
use std::time::Instant;

use bridgekit::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use bridgekit::store::{MessageMapping, Portal, PortalKey, Queues, SledStore, Store};
use bridgekit::{ChatId, MessageId, RemoteUserId};

/// How much history to write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Prefill {
    pub messages: usize,
    pub ghosts: usize,
    pub portals: usize,
}

impl Prefill {
    pub fn is_empty(&self) -> bool {
        self.messages == 0 && self.ghosts == 0 && self.portals == 0
    }

    /// Writes the history into a sled store at `path` (created), with the bridge's default
    /// cache, and flushes it. Returns the seconds it took.
    pub async fn write(&self, path: &Path) -> f64 {
        let started = Instant::now();
        let store = SledStore::open(path, bridgekit::store::DEFAULT_CACHE_BYTES).unwrap();
        for n in 0..self.portals {
            let room: OwnedRoomId = format!("!prefill{n}:localhost").try_into().unwrap();
            let portal = Portal::new(
                PortalKey::new(ChatId::new(format!("chat{n}")).unwrap()),
                room,
            );
            store.put_portal(&portal).await.unwrap();
        }
        for n in 0..self.ghosts {
            let user: OwnedUserId = format!("@_echo_prefill{n}:localhost").try_into().unwrap();
            let remote = RemoteUserId::new(format!("prefill{n}")).unwrap();
            store
                .update_ghost(&user, &move |g| {
                    g.remote_id = Some(remote.clone());
                    g.registered = true;
                    g.displayname = Some(format!("Prefilled user {n}"));
                })
                .await
                .unwrap();
        }
        let rooms = self.portals.max(100);
        for n in 0..self.messages {
            let room: OwnedRoomId = format!("!prefill{}:localhost", n % rooms)
                .try_into()
                .unwrap();
            let event: OwnedEventId = format!("$prefill{n}").try_into().unwrap();
            let mapping =
                MessageMapping::new(room, MessageId::new(format!("remote{n}")).unwrap(), event);
            store.insert_message(&mapping).await.unwrap();
        }
        // Measure a settled store: the mappings sealed and merged as a long-running bridge
        // would have them, not the prefill's merges still running during the measurement.
        let settled = store.wait_for_background_work(std::time::Duration::from_secs(600));
        assert!(settled, "the prefilled store did not settle in 10 minutes");
        store.flush().await.unwrap();
        started.elapsed().as_secs_f64()
    }
}
