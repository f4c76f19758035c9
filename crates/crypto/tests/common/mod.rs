//! Fakes for the machine's two outlets: an in-memory store and a homeserver answering the
//! key endpoints (for the tests and the benchmark).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bridgekit_crypto::{Batch, BoxError, KeyValue, Transport};

#[derive(Debug, Default)]
pub struct MemoryKv(pub Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait]
impl KeyValue for MemoryKv {
    async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, BoxError> {
        Ok(self.0.lock().unwrap().clone().into_iter().collect())
    }
    async fn apply(&self, batch: Batch) -> Result<(), BoxError> {
        let mut map = self.0.lock().unwrap();
        for (k, v) in batch.puts {
            map.insert(k, v);
        }
        for k in batch.deletes {
            map.remove(&k);
        }
        Ok(())
    }
}

/// Answers the endpoints a starting device calls, and records their paths.
#[derive(Default)]
pub struct FakeHomeserver {
    pub paths: Mutex<Vec<String>>,
}

#[async_trait]
impl Transport for FakeHomeserver {
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, BoxError> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        assert!(
            query.contains("user_id=%40bot%3Aexample.org") && query.contains("device_id=BOTDEV"),
            "not addressed as the bot's device: {query}"
        );
        self.paths.lock().unwrap().push(path.clone());
        let body: serde_json::Value = if path.ends_with("/keys/upload") {
            let sent: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
            let n = sent["one_time_keys"].as_object().map_or(0, |m| m.len());
            serde_json::json!({"one_time_key_counts": {"signed_curve25519": n}})
        } else if path.ends_with("/keys/signatures/upload") {
            serde_json::json!({"failures": {}})
        } else if path.ends_with("/keys/query") {
            serde_json::json!({"device_keys": {}})
        } else {
            serde_json::json!({})
        };
        Ok(http::Response::builder()
            .status(200)
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap())
    }
}
