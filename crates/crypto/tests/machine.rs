//! The machine's state survives a restart through the bridge's store (here an in-memory
//! key-value map), and the pickle key seals it; the homeserver is a fake that answers the
//! key endpoints.

use std::sync::Arc;

use async_trait::async_trait;
use bridgekit_crypto::{Batch, BoxError, KeyValue, Machine, MachineConfig};

#[path = "common/mod.rs"]
mod common;
use common::{FakeHomeserver, MemoryKv};

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
    let error = wrong.expect_err("opened with the wrong key").to_string();
    assert!(error.contains("pickle_key"), "{error}");
    let none = Machine::open(config(None), kv.clone(), hs.clone()).await;
    let error = none.expect_err("opened without the key").to_string();
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
    let error = opened.expect_err("started without saving").to_string();
    assert!(error.contains("no space left"), "{error}");
}
