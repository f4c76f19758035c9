//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API).
//! Each takes arbitrary bytes and must never panic, hang or allocate without bound.

use std::path::Path;

use ruma::api::appservice::event::push_events::v1::EphemeralData;
use ruma::events::AnyTimelineEvent;

use crate::store::queues::InboxItem;

/// A transaction body, as `PUT /_matrix/app/v1/transactions/{txnId}` receives it, down to
/// the inbox items and their stored form.
pub fn transaction(body: &[u8]) {
    if let Ok(parsed) = crate::appservice::transaction::parse_transaction("fuzz", body) {
        for item in parsed.incoming.items {
            let stored = item.encode();
            let back = InboxItem::decode(&stored).expect("an encoded item decodes");
            assert_eq!(back, item);
            event(&item.json);
        }
    }
}

/// One event as the router parses it (timeline, ephemeral, to-device).
pub fn event(json: &str) {
    if let Ok(event) = serde_json::from_str::<AnyTimelineEvent>(json) {
        let _ = crate::incoming::resolve::is_reportable(&event);
        let _ = (event.event_id(), event.room_id(), event.sender());
    }
    let _ = serde_json::from_str::<EphemeralData>(json);
    let _ = InboxItem::decode(json.as_bytes());
}

/// The `Authorization` header (before the first NUL) and the query string (after it).
pub fn authorization(data: &[u8]) {
    let (header, query) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let token = "hs-token-for-fuzzing";
    let verdict = crate::appservice::auth::authorize(Some(header), &query, token);
    if verdict.is_ok() {
        // Only the right token passes.
        let header_ok = header.len() >= 7
            && header[..7].eq_ignore_ascii_case(b"bearer ")
            && header[7..].trim_ascii() == token.as_bytes();
        let query_ok = crate::appservice::query_pairs(&query)
            .any(|(key, value)| key == "access_token" && value == token);
        assert!(header_ok || query_ok, "authorized without the token");
    }
}

/// Path parameters and query strings: percent-decoding, then the ID parsers.
pub fn path_and_query(text: &str) {
    let decoded = crate::appservice::percent_decode(text);
    let _ = ruma::UserId::parse(decoded.as_str());
    let _ = ruma::RoomAliasId::parse(decoded.as_str());
    let _ = ruma::RoomId::parse(decoded.as_str());
    for (key, value) in crate::appservice::query_pairs(text) {
        let _ = (key.len(), value.len());
    }
    let _ = crate::ids::unescape_localpart(text);
    let escaped = crate::ids::escape_localpart(text);
    assert_eq!(
        crate::ids::unescape_localpart(&escaped).as_deref(),
        Some(text)
    );
}

/// A registration file.
pub fn registration(text: &str) {
    let _ = crate::Registration::from_yaml(text, Path::new("fuzz-registration.yaml"));
}

/// A config file (environment overrides empty).
pub fn config(text: &str) {
    let _ = crate::Config::parse(text, Path::new("/fuzz/config.yaml"), &|_| None);
}
