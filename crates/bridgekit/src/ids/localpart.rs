//! Turning remote user IDs into Matrix localparts and back, and IDs into URL path segments.
//!
//! Localparts may hold only `a-z 0-9 . _ = - /`. Remote IDs are escaped reversibly:
//! `A-Z` → `_` + lowercase, `_` → `__`, any other byte outside the set → `=xx` (hex).

/// Escapes `remote_id` into characters allowed in a Matrix localpart.
pub fn escape_localpart(remote_id: &str) -> String {
    let mut out = String::with_capacity(remote_id.len());
    for byte in remote_id.bytes() {
        match byte {
            b'A'..=b'Z' => {
                out.push('_');
                out.push(byte.to_ascii_lowercase() as char);
            }
            b'_' => out.push_str("__"),
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("={byte:02x}")),
        }
    }
    out
}

/// Reverses [`escape_localpart`]; `None` if `escaped` is not a valid escape.
pub fn unescape_localpart(escaped: &str) -> Option<String> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'_' => match bytes.next()? {
                b'_' => out.push(b'_'),
                c @ b'a'..=b'z' => out.push(c.to_ascii_uppercase()),
                _ => return None,
            },
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters (for IDs in URLs).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_stays_in_the_allowed_set() {
        for id in [
            "alice",
            "Alice_B",
            "@alice:example.org",
            "ünï cödé",
            "a=b/c.d-e",
            "",
        ] {
            let escaped = escape_localpart(id);
            assert!(
                escaped.bytes().all(
                    |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/')
                ),
                "{escaped}"
            );
            assert_eq!(unescape_localpart(&escaped).as_deref(), Some(id));
        }
        assert_eq!(escape_localpart("Bob_x:y"), "_bob__x=3ay");
        assert_eq!(unescape_localpart("_B"), None);
    }
}
