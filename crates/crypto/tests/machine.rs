//! The machine's state survives a restart through the bridge's store (here an in-memory
//! key-value map), and the pickle key seals it; the homeserver is a fake that answers the
//! key endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bridgekit_crypto::{Batch, BoxError, KeyValue, Machine, MachineConfig, Transport};

#[derive(Debug, Default)]
struct MemoryKv(Mutex<BTreeMap<String, Vec<u8>>>);

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
struct FakeHomeserver {
    paths: Mutex<Vec<String>>,
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

fn config(pickle_key: Option<&str>) -> MachineConfig {
    MachineConfig::new(
        "http://hs.invalid",
        "as-token",
        "@bot:example.org",
        "BOTDEV",
    )
    .with_pickle_key(pickle_key.map(str::to_owned))
}

#[tokio::test]
async fn the_device_comes_back_from_the_store_with_its_keys_and_is_not_set_up_again() {
    let kv = Arc::new(MemoryKv::default());
    let first_hs = Arc::new(FakeHomeserver::default());
    let first = Machine::open(config(None), kv.clone(), first_hs.clone())
        .await
        .unwrap();
    let keys = first.identity_keys();
    let paths = first_hs.paths.lock().unwrap().clone();
    assert!(
        paths.iter().any(|p| p.ends_with("/keys/upload")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("/keys/device_signing/upload")),
        "not cross-signed: {paths:?}"
    );
    drop(first);

    let again_hs = Arc::new(FakeHomeserver::default());
    let again = Machine::open(config(None), kv.clone(), again_hs.clone())
        .await
        .unwrap();
    assert_eq!(again.identity_keys(), keys, "a new device after a restart");
    let paths = again_hs.paths.lock().unwrap().clone();
    assert!(
        !paths.iter().any(|p| p.contains("device_signing")),
        "cross-signed again: {paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("/keys/upload")),
        "keys uploaded again: {paths:?}"
    );
}

#[tokio::test]
async fn with_a_pickle_key_the_state_is_sealed_and_opens_only_with_that_key() {
    let kv = Arc::new(MemoryKv::default());
    let hs = Arc::new(FakeHomeserver::default());
    let machine = Machine::open(
        config(Some("correct horse battery")),
        kv.clone(),
        hs.clone(),
    )
    .await
    .unwrap();
    let keys = machine.identity_keys();
    drop(machine);
    let stored = kv.0.lock().unwrap().clone();
    assert!(!stored.is_empty());
    for (key, value) in &stored {
        assert!(
            serde_json::from_slice::<serde_json::Value>(value).is_err(),
            "{key} is stored in the clear"
        );
    }
    let wrong = Machine::open(config(Some("another passphrase")), kv.clone(), hs.clone()).await;
    let error = wrong.err().expect("opened with the wrong key").to_string();
    assert!(error.contains("pickle_key"), "{error}");
    let none = Machine::open(config(None), kv.clone(), hs.clone()).await;
    let error = none.err().expect("opened without the key").to_string();
    assert!(error.contains("pickle_key"), "{error}");
    let right = Machine::open(config(Some("correct horse battery")), kv, hs)
        .await
        .unwrap();
    assert_eq!(right.identity_keys(), keys);
}

#[tokio::test]
async fn a_store_that_refuses_writes_fails_the_start_instead_of_running_unsaved() {
    #[derive(Debug)]
    struct FullDisk;
    #[async_trait]
    impl KeyValue for FullDisk {
        async fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, BoxError> {
            Ok(Vec::new())
        }
        async fn apply(&self, _: Batch) -> Result<(), BoxError> {
            Err("no space left on device".into())
        }
    }
    let opened = Machine::open(
        config(None),
        Arc::new(FullDisk),
        Arc::new(FakeHomeserver::default()),
    )
    .await;
    let error = opened.err().expect("started without saving").to_string();
    assert!(error.contains("no space left"), "{error}");
}
