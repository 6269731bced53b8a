//! `dashboard`: delivers touch-points to our dashboard's JSON API:
//! `PUT /v1/touchpoints/{source}/{external_id}` for upserts (idempotent),
//! `DELETE` for deletes (`404` means gone already). The bearer token is the
//! tenant's credential, added by the host. `422` is invalid (with the
//! dashboard's message); `429`/`503` are transient with `Retry-After`.

weft_sdk::connector_bindings!("destination-connector", "../../wit/v0.1.0");

use exports::weft::connector::destination::Guest as Destination;
use exports::weft::connector::metadata::Guest as Metadata;
use serde::Deserialize;
use serde_json::json;
use weft_sdk::http::Request;
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

fn deliver(cfg: &Config, r: &Record) -> Result<(), Error> {
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
    match r.op {
        Operation::Upsert => {
            Request::new("PUT", &url)
                .json(&body["touchpoint"])
                .send()?
                .error_for_status(&format!("PUT {url}"))?;
        }
        Operation::Delete => {
            let resp = Request::new("DELETE", &url).send()?;
            if resp.status != 404 {
                resp.error_for_status(&format!("DELETE {url}"))?;
            }
        }
    }
    Ok(())
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
        weft_sdk::each_record(&records, deliver)
    }
}

export!(Dashboard);
