//! `__NAME__`: a weft source. It reads a JSON API that lists items page by
//! page: `GET {base_url}/{stream}?limit=100[&cursor=…]` answering
//! `{ "items": [{ "id": …, "updated_at": "RFC 3339", … }], "next": "…" | null }`.
//! Each item becomes an upsert keyed by its `id`, versioned by `updated_at`
//! (newer wins at the host), or a delete when it carries `"deleted": true`.
//! The weft cursor is the API's `next`; with no `next` the run ends and the
//! next run starts again from the cursor it was given.
//!
//! Adapt `page_from` to your API: it is plain logic, tested by `cargo test`.

weft_sdk::connector_bindings!("source-connector");

use exports::weft::connector::metadata::Guest as Metadata;
use exports::weft::connector::source::{Guest as Source, Page, Webhook};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_sdk::http::{Request, percent_encode};
use weft_sdk::types::{ConnectorInfo, Error, Record, StreamInfo};
use weft_sdk::{invalid, tenant_config};

struct Connector;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    base_url: String,
}

/// One answer of the API.
#[derive(Deserialize)]
struct Listing {
    items: Vec<Value>,
    next: Option<String>,
}

/// The version of an item: the instant its `updated_at` names, in
/// microseconds since 1970 (UTC), so that a later change always wins: two
/// edits within one second keep their order (their fractions of a second
/// count), and offsets count (`10:00+02:00` is before `09:00Z`).
fn version_of(item: &Value) -> Result<i64, Error> {
    let at = item["updated_at"]
        .as_str()
        .ok_or_else(|| invalid("an item has no updated_at"))?;
    micros_since_epoch(at)
        .ok_or_else(|| invalid(format!("updated_at {at:?} is not an RFC 3339 instant")))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as microseconds since
/// 1970-01-01T00:00:00Z (digits past the sixth of the fraction dropped).
fn micros_since_epoch(at: &str) -> Option<i64> {
    let b = at.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = at.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for k in 0..6 {
            let digit = if k < digits { (b[i + 1 + k] - b'0') as i64 } else { 0 };
            micros = micros * 10 + digit;
        }
        i += 1 + digits;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), March-based years.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + micros)
}

/// Turns one answer into a page of records.
fn page_from(stream: &str, listing: Listing, cursor: Option<String>) -> Result<Page, Error> {
    let mut records = Vec::with_capacity(listing.items.len());
    for item in &listing.items {
        let key = match &item["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid("an item has no id")),
        };
        let version = version_of(item)?;
        records.push(if item["deleted"] == json!(true) {
            Record::delete(key, stream, version, item)
        } else {
            Record::upsert(key, stream, version, item)
        });
    }
    Ok(Page {
        records,
        has_more: listing.next.is_some(),
        next_cursor: listing.next.or(cursor),
    })
}

impl Metadata for Connector {
    fn describe() -> ConnectorInfo {
        // Name, version and description from Cargo.toml.
        ConnectorInfo {
            streams: vec![StreamInfo {
                name: "items".into(),
                description: "Every item, oldest change first".into(),
            }],
            config_schema: weft_sdk::config_schema(
                &["base_url"],
                json!({ "base_url": { "type": "string", "pattern": "^https?://" } }),
            ),
            outbound_hosts: vec!["*".into()],
            ..weft_sdk::package_info!()
        }
    }
}

impl Source for Connector {
    fn fetch(stream: String, cursor: Option<String>) -> Result<Page, Error> {
        let cfg: Config = tenant_config()?;
        let mut url = format!("{}/{stream}?limit=100", cfg.base_url.trim_end_matches('/'));
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(&percent_encode(c, b""));
        }
        let listing: Listing = Request::get(&url)
            .send()?
            .error_for_status(&format!("listing {stream}"))?
            .json()?;
        page_from(&stream, listing, cursor)
    }

    fn on_webhook(_delivery: Webhook) -> Result<Vec<Record>, Error> {
        Err(invalid("this source takes no webhooks"))
    }
}

export!(Connector);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_versioned_records_and_the_cursor_moves_on() {
        let listing: Listing = serde_json::from_value(json!({
            "items": [
                {"id": 1, "updated_at": "2026-01-02T03:04:05Z", "name": "a"},
                {"id": "b", "updated_at": "2026-01-02T03:04:06Z", "deleted": true}
            ],
            "next": "p2"
        }))
        .unwrap();
        let page = page_from("items", listing, None).unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.records[0].key, "1");
        assert!(page.records[1].version > page.records[0].version);
        assert_eq!(page.next_cursor.as_deref(), Some("p2"));
        assert!(page.has_more);
    }

    /// Two edits within one second keep their order, and offsets count:
    /// versions cut to whole seconds lost the second edit for good.
    #[test]
    fn versions_are_instants_to_the_microsecond() {
        let v = |at: &str| version_of(&json!({ "updated_at": at })).unwrap();
        assert!(v("2026-01-02T03:04:05.250Z") > v("2026-01-02T03:04:05.100Z"));
        assert!(v("2026-01-02T03:04:05.000001Z") > v("2026-01-02T03:04:05Z"));
        assert!(v("2026-01-02T10:00:00+02:00") < v("2026-01-02T09:00:00Z"));
        assert_eq!(v("1970-01-01T00:00:01Z"), 1_000_000);
        assert_eq!(v("2026-01-02T03:04:05Z"), 1_767_323_045_000_000);
        for bad in ["2026-01-02", "2026-13-02T03:04:05Z", "yesterday", "2026-01-02T03:04:05"] {
            assert!(version_of(&json!({ "updated_at": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_item_without_updated_at_is_invalid() {
        let listing: Listing =
            serde_json::from_value(json!({"items": [{"id": 1}], "next": null})).unwrap();
        assert!(matches!(
            page_from("items", listing, None),
            Err(Error::Invalid(_))
        ));
    }
}
