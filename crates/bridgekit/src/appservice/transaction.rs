//! Parsing `PUT /_matrix/app/v1/transactions/{txnId}` bodies.
//!
//! The body is split into its events without deserializing them: each event is kept as the
//! homeserver's raw JSON and only its routing fields are read. A malformed event is logged and
//! skipped alone; the others go on. Both the stable and the MSC2409 unstable names of
//! `ephemeral` and `to_device` are read (Synapse sends one or the other depending on the
//! registration flag).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::hash::fnv1a64;
use crate::store::queues::{InboxItem, IncomingTransaction, ItemKind};

/// Why a transaction body was refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Not JSON at all (or not UTF-8): `400 M_NOT_JSON`.
    #[error("the transaction body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not a transaction object: `400 M_BAD_JSON`.
    #[error("the transaction body is not a valid transaction: {0}")]
    BadJson(String),
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    ephemeral: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "de.sorunome.msc2409.ephemeral")]
    ephemeral_unstable: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    to_device: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "de.sorunome.msc2409.to_device")]
    to_device_unstable: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    device_lists: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "org.matrix.msc3202.device_lists")]
    device_lists_unstable: Option<&'a RawValue>,
    #[serde(borrow, default)]
    device_one_time_keys_count: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        rename = "org.matrix.msc3202.device_one_time_keys_count"
    )]
    otk_counts_unstable: Option<&'a RawValue>,
    /// The misspelling Synapse sends as well.
    #[serde(
        borrow,
        default,
        rename = "org.matrix.msc3202.device_one_time_key_counts"
    )]
    otk_counts_misspelled: Option<&'a RawValue>,
    #[serde(borrow, default)]
    device_unused_fallback_key_types: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        rename = "org.matrix.msc3202.device_unused_fallback_key_types"
    )]
    fallback_types_unstable: Option<&'a RawValue>,
}

/// The queue of device data items (device lists and key counts, for the bot's device).
pub(crate) const DEVICE_QUEUE: &str = "device";

/// A transaction's device data (MSC3202) as one inbox item: `{"device_lists", "one_time_keys",
/// "fallback_keys"}`, each as the homeserver sent it, absent when it sent nothing.
fn device_data(body: &Body<'_>) -> Option<InboxItem> {
    let lists = body.device_lists.or(body.device_lists_unstable);
    let otk = body
        .device_one_time_keys_count
        .or(body.otk_counts_unstable)
        .or(body.otk_counts_misspelled);
    let fallback = body
        .device_unused_fallback_key_types
        .or(body.fallback_types_unstable);
    let empty = |raw: Option<&RawValue>| {
        raw.is_none_or(|r| {
            matches!(
                r.get().trim(),
                "{}" | "null" | r#"{"changed":[],"left":[]}"#
            )
        })
    };
    if empty(lists) && empty(otk) && empty(fallback) {
        return None;
    }
    let mut json = String::from("{");
    for (name, raw) in [
        ("device_lists", lists),
        ("one_time_keys", otk),
        ("fallback_keys", fallback),
    ] {
        if let Some(raw) = raw {
            if json.len() > 1 {
                json.push(',');
            }
            json.push_str(&format!("\"{name}\":{}", raw.get()));
        }
    }
    json.push('}');
    Some(InboxItem {
        kind: ItemKind::DeviceData,
        queue: DEVICE_QUEUE.to_owned(),
        json,
    })
}

/// The fields of an event that decide where it goes.
#[derive(Deserialize)]
struct Routing<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sender: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to_user_id: Option<Cow<'a, str>>,
}

/// A transaction split into inbox items, with what was skipped.
#[derive(Debug)]
pub(crate) struct ParsedTransaction {
    pub incoming: IncomingTransaction,
    pub skipped: usize,
}

/// Splits a transaction body into inbox items.
///
/// The deduplication key is the txnId plus a digest of the event IDs: a retry carries the
/// same events (the spec forbids changing them, and Synapse drops only ephemeral data on
/// retries), while a txnId that Synapse reuses after its restart carries different ones.
pub(crate) fn parse_transaction(txn_id: &str, body: &[u8]) -> Result<ParsedTransaction, BodyError> {
    let body: Body<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => BodyError::BadJson(e.to_string()),
        _ => BodyError::NotJson(e.to_string()),
    })?;
    let device = device_data(&body);
    let mut items = Vec::with_capacity(body.events.len());
    let mut skipped = 0;
    for raw in &body.events {
        match timeline_item(raw) {
            Some(item) => items.push(item),
            None => {
                skipped += 1;
                tracing::warn!(txn_id, event = %truncate(raw.get()), "skipping malformed event: it needs event_id, room_id, sender and type strings");
            }
        }
    }
    let ephemeral = body
        .ephemeral
        .or(body.ephemeral_unstable)
        .unwrap_or_default();
    for raw in &ephemeral {
        match routing(raw).and_then(|r| r.room_id.or(r.sender)) {
            Some(queue) => items.push(InboxItem {
                kind: ItemKind::Ephemeral,
                queue: queue.into_owned(),
                json: raw.get().to_owned(),
            }),
            None => {
                skipped += 1;
                tracing::warn!(txn_id, event = %truncate(raw.get()), "skipping ephemeral event without room_id or sender");
            }
        }
    }
    let to_device = body
        .to_device
        .or(body.to_device_unstable)
        .unwrap_or_default();
    for raw in &to_device {
        match routing(raw).and_then(|r| r.to_user_id) {
            Some(queue) => items.push(InboxItem {
                kind: ItemKind::ToDevice,
                queue: queue.into_owned(),
                json: raw.get().to_owned(),
            }),
            None => {
                skipped += 1;
                tracing::warn!(txn_id, event = %truncate(raw.get()), "skipping to-device event without to_user_id");
            }
        }
    }
    items.extend(device);
    let digest = if body.events.is_empty() {
        fnv1a64(items.iter().map(|i| i.json.as_bytes()))
    } else {
        fnv1a64(
            body.events
                .iter()
                .map(|raw| match routing(raw).and_then(|r| r.event_id) {
                    Some(Cow::Borrowed(id)) => id.as_bytes(),
                    _ => raw.get().as_bytes(),
                }),
        )
    };
    let mut key = Vec::with_capacity(txn_id.len() + 9);
    key.extend_from_slice(txn_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&digest.to_be_bytes());
    Ok(ParsedTransaction {
        incoming: IncomingTransaction { key, items },
        skipped,
    })
}

fn routing(raw: &RawValue) -> Option<Routing<'_>> {
    serde_json::from_str(raw.get()).ok()
}

/// A timeline event needs `event_id`, `room_id`, `sender` and `type` to be routed at all.
fn timeline_item(raw: &RawValue) -> Option<InboxItem> {
    let r = routing(raw)?;
    r.event_id
        .as_ref()
        .and(r.sender.as_ref())
        .and(r.kind.as_ref())?;
    Some(InboxItem {
        kind: ItemKind::Timeline,
        queue: r.room_id?.into_owned(),
        json: raw.get().to_owned(),
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = r#"{"event_id":"$1","room_id":"!r:x","sender":"@a:x","type":"m.room.message","content":{"body":"hi","msgtype":"m.text"}}"#;

    #[test]
    fn malformed_events_are_skipped_alone() {
        let body =
            format!(r#"{{"events":[{{"type":"m.room.message","content":{{}}}}, 5, {MSG}, "x"]}}"#);
        let parsed = parse_transaction("1", body.as_bytes()).unwrap();
        assert_eq!(parsed.skipped, 3);
        assert_eq!(parsed.incoming.items.len(), 1);
        assert_eq!(parsed.incoming.items[0].queue, "!r:x");
        assert_eq!(parsed.incoming.items[0].json, MSG);
    }

    #[test]
    fn stable_and_unstable_names_are_read() {
        let typing = r#"{"type":"m.typing","room_id":"!r:x","content":{"user_ids":[]}}"#;
        let presence = r#"{"type":"m.presence","sender":"@a:x","content":{"presence":"online"}}"#;
        let to_dev =
            r#"{"type":"t","sender":"@a:x","to_user_id":"@_g:x","to_device_id":"D","content":{}}"#;
        for (eph, td) in [
            ("ephemeral", "to_device"),
            (
                "de.sorunome.msc2409.ephemeral",
                "de.sorunome.msc2409.to_device",
            ),
        ] {
            let body =
                format!(r#"{{"events":[],"{eph}":[{typing},{presence}],"{td}":[{to_dev}]}}"#);
            let items = parse_transaction("1", body.as_bytes())
                .unwrap()
                .incoming
                .items;
            let got: Vec<_> = items.iter().map(|i| (i.kind, i.queue.as_str())).collect();
            assert_eq!(
                got,
                vec![
                    (ItemKind::Ephemeral, "!r:x"),
                    (ItemKind::Ephemeral, "@a:x"),
                    (ItemKind::ToDevice, "@_g:x")
                ],
                "{eph}"
            );
        }
    }

    #[test]
    fn device_data_under_any_name_becomes_one_item() {
        let lists = r#"{"changed":["@a:x"],"left":[]}"#;
        let otk = r#"{"@bot:x":{"D":{"signed_curve25519":3}}}"#;
        let fallback = r#"{"@bot:x":{"D":["signed_curve25519"]}}"#;
        for (l, o, f) in [
            (
                "device_lists",
                "device_one_time_keys_count",
                "device_unused_fallback_key_types",
            ),
            (
                "org.matrix.msc3202.device_lists",
                "org.matrix.msc3202.device_one_time_key_counts",
                "org.matrix.msc3202.device_unused_fallback_key_types",
            ),
        ] {
            let body = format!(r#"{{"events":[],"{l}":{lists},"{o}":{otk},"{f}":{fallback}}}"#);
            let items = parse_transaction("1", body.as_bytes())
                .unwrap()
                .incoming
                .items;
            assert_eq!(items.len(), 1, "{l}");
            assert_eq!(items[0].kind, ItemKind::DeviceData);
            let v: serde_json::Value = serde_json::from_str(&items[0].json).unwrap();
            assert_eq!(v["device_lists"]["changed"][0], "@a:x");
            assert_eq!(v["one_time_keys"]["@bot:x"]["D"]["signed_curve25519"], 3);
            assert_eq!(v["fallback_keys"]["@bot:x"]["D"][0], "signed_curve25519");
        }
        let nothing = r#"{"events":[],"device_lists":{"changed":[],"left":[]},"device_one_time_keys_count":{}}"#;
        assert!(
            parse_transaction("1", nothing.as_bytes())
                .unwrap()
                .incoming
                .items
                .is_empty()
        );
    }

    #[test]
    fn the_stable_name_wins_when_both_are_present() {
        let body = r#"{"events":[],"ephemeral":[{"type":"m.typing","room_id":"!stable:x","content":{}}],
            "de.sorunome.msc2409.ephemeral":[{"type":"m.typing","room_id":"!unstable:x","content":{}}]}"#;
        let items = parse_transaction("1", body.as_bytes())
            .unwrap()
            .incoming
            .items;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].queue, "!stable:x");
    }

    #[test]
    fn non_json_and_non_transactions_are_refused_clearly() {
        for body in [&b"not json"[..], b"{\"events\": [", b"\xff\xfe"] {
            assert!(
                matches!(parse_transaction("1", body), Err(BodyError::NotJson(_))),
                "{body:?}"
            );
        }
        for body in [&b"[]"[..], b"\"s\"", b"12", b"{}", b"{\"events\": {}}"] {
            assert!(
                matches!(parse_transaction("1", body), Err(BodyError::BadJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn dedupe_key_tracks_events_not_ephemeral_data() {
        let with_eph = format!(
            r#"{{"events":[{MSG}],"ephemeral":[{{"type":"m.typing","room_id":"!r:x","content":{{}}}}]}}"#
        );
        let without = format!(r#"{{"events":[{MSG}]}}"#);
        let other = r#"{"events":[{"event_id":"$2","room_id":"!r:x","sender":"@a:x","type":"m.room.message","content":{}}]}"#;
        let key = |id: &str, b: &str| parse_transaction(id, b.as_bytes()).unwrap().incoming.key;
        assert_eq!(
            key("7", &with_eph),
            key("7", &without),
            "a retry without ephemeral data is the same transaction"
        );
        assert_ne!(
            key("7", &without),
            key("7", other),
            "a reused txnId with new events is a new transaction"
        );
        assert_ne!(key("7", &without), key("8", &without));
    }
}
