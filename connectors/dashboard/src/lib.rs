//! `dashboard`: delivers touch-points to our dashboard's JSON API:
//! `PUT /v1/touchpoints/{source}/{external_id}` for upserts (idempotent),
//! `DELETE` for deletes (`404` means gone already). A batch's requests go
//! out concurrently, at most 8 at a time. The bearer token is the
//! tenant's credential, added by the host. `422` is invalid (with the
//! dashboard's message); `429`/`503` are transient with `Retry-After`.

weft_sdk::connector_bindings!("destination-connector");

use exports::weft::connector::destination::Guest as Destination;
use exports::weft::connector::metadata::Guest as Metadata;
use serde::Deserialize;
use serde_json::json;
use weft_sdk::http::{Request, send_all};
use weft_sdk::invalid;
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};

struct Dashboard;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    base_url: String,
}

fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Requests of one batch in flight at once (the host's default
/// `max_http_in_flight`).
const IN_FLIGHT: usize = 8;

/// The request that delivers `r`.
fn request(cfg: &Config, r: &Record) -> Result<(Request, String), Error> {
    let body = r.json()?;
    let source = body["source"]
        .as_str()
        .ok_or_else(|| invalid(format!("record {}: no source", r.key)))?;
    let id = body["external_id"]
        .as_str()
        .ok_or_else(|| invalid(format!("record {}: no external_id", r.key)))?;
    let url = format!(
        "{}/v1/touchpoints/{}/{}",
        cfg.base_url.trim_end_matches('/'),
        segment(source),
        segment(id)
    );
    Ok(match r.op {
        Operation::Upsert => (
            Request::new("PUT", &url).json(&body["touchpoint"]),
            format!("PUT {url}"),
        ),
        Operation::Delete => (Request::new("DELETE", &url), format!("DELETE {url}")),
    })
}

/// Delivers a batch, its requests concurrently; `404` on a delete means
/// gone already.
fn deliver_all(cfg: &Config, records: &[Record]) -> Vec<Result<(), Error>> {
    let planned: Vec<Result<(Request, String), Error>> =
        records.iter().map(|r| request(cfg, r)).collect();
    let reqs: Vec<Request> = planned
        .iter()
        .filter_map(|p| p.as_ref().ok().map(|(r, _)| r.clone()))
        .collect();
    let mut answers = send_all(&reqs, IN_FLIGHT).into_iter();
    planned
        .into_iter()
        .zip(records)
        .map(|(plan, r)| {
            let (_, what) = plan?;
            let resp = answers
                .next()
                .unwrap_or_else(|| Err(invalid("no answer")))?;
            if r.op == Operation::Delete && resp.status == 404 {
                return Ok(());
            }
            resp.error_for_status(&what).map(|_| ())
        })
        .collect()
}

impl Metadata for Dashboard {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "dashboard".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Touch-points to our dashboard".into(),
            streams: vec![],
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

impl Destination for Dashboard {
    fn emit(records: Vec<Record>) -> Vec<Result<(), Error>> {
        match weft_sdk::tenant_config::<Config>() {
            Ok(cfg) => deliver_all(&cfg, &records),
            Err(e) => records.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

export!(Dashboard);
