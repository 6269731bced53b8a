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
use weft_sdk::http::Request;
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

/// The version of an item: its `updated_at` as a count of seconds, so that
/// a later change always wins.
fn version_of(item: &Value) -> Result<i64, Error> {
    let at = item["updated_at"]
        .as_str()
        .ok_or_else(|| invalid("an item has no updated_at"))?;
    // `YYYY-MM-DDTHH:MM:SSZ` compares as a number once the separators go.
    let digits: String = at.chars().filter(char::is_ascii_digit).take(14).collect();
    digits
        .parse()
        .map_err(|_| invalid(format!("updated_at {at:?} is not an RFC 3339 instant")))
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
        ConnectorInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            streams: vec![StreamInfo {
                name: "items".into(),
                description: "Every item, oldest change first".into(),
            }],
            config_schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["base_url"],
                "properties": { "base_url": { "type": "string", "pattern": "^https?://" } },
                "additionalProperties": false
            })
            .to_string(),
            outbound_hosts: vec!["*".into()],
        }
    }
}

impl Source for Connector {
    fn fetch(stream: String, cursor: Option<String>) -> Result<Page, Error> {
        let cfg: Config = tenant_config()?;
        let mut url = format!("{}/{stream}?limit=100", cfg.base_url.trim_end_matches('/'));
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(&url_encode(c));
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

/// Percent-encodes a query value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
