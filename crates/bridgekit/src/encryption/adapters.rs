//! The crypto machine's two outlets: its state goes to the bridge's store, its requests go
//! out over the bridge's homeserver client.

use std::sync::Arc;

use async_trait::async_trait;
use bridgekit_crypto::{Batch, BoxError, KeyValue, Transport};

use crate::client::HomeserverClient;
use crate::store::Backend;

/// The machine's state in the store's [`CryptoState`](crate::store::CryptoState).
pub(crate) struct StoreState(pub Arc<dyn Backend>);

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreState")
    }
}

#[async_trait]
impl KeyValue for StoreState {
    async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, BoxError> {
        Ok(self.0.crypto_entries().await?)
    }

    async fn apply(&self, batch: Batch) -> Result<(), BoxError> {
        Ok(self.0.apply_crypto(&batch.puts, &batch.deletes).await?)
    }
}

/// The machine's requests through the bridge's client (its pool, timeouts and retries).
pub(crate) struct ClientTransport(pub HomeserverClient);

#[async_trait]
impl Transport for ClientTransport {
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, BoxError> {
        Ok(self.0.send_raw(request).await?)
    }
}
