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
    weft_sdk::http::percent_encode(s, b"")
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
            description: "Touch-points to our dashboard".into(),
            config_schema: weft_sdk::config_schema(
                &["base_url"],
                json!({ "base_url": { "type": "string", "pattern": "^https?://" } }),
            ),
            outbound_hosts: vec!["*".into()],
            ..weft_sdk::package_info!()
        }
    }
}

impl Destination for Dashboard {
    fn emit(records: Vec<Record>) -> Vec<Result<(), Error>> {
        weft_sdk::with_config(&records, |cfg: &Config| deliver_all(cfg, &records))
    }
}

export!(Dashboard);
