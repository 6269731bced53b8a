//! `__NAME__`: a weft destination. It delivers each record as JSON to the
//! tenant's endpoint: `PUT {base_url}/{key}` with the body for upserts,
//! `DELETE {base_url}/{key}` for deletes (`404` means gone already). The
//! batch's requests go out concurrently. The host adds the tenant's
//! credential and waits out rate limits; answers map onto weft's error
//! classes (`429`/`5xx` transient, `401`/`403` config, other `4xx` invalid).

weft_sdk::connector_bindings!("destination-connector");

use exports::weft::connector::destination::Guest as Destination;
use exports::weft::connector::metadata::Guest as Metadata;
use serde::Deserialize;
use serde_json::json;
use weft_sdk::http::{Request, percent_encode, send_all};
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};

struct Connector;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    base_url: String,
}

/// Requests of one batch in flight at once.
const IN_FLIGHT: usize = 8;

/// The request that delivers `r`: the logic, kept apart from the bindings so
/// that `cargo test` runs it natively.
fn request(cfg: &Config, r: &Record) -> Result<Request, Error> {
    let url = format!("{}/{}", cfg.base_url.trim_end_matches('/'), percent_encode(&r.key, b""));
    Ok(match r.op {
        Operation::Upsert => Request::new("PUT", &url).json(&r.json()?),
        Operation::Delete => Request::new("DELETE", &url),
    })
}

impl Metadata for Connector {
    fn describe() -> ConnectorInfo {
        // Name, version and description from Cargo.toml.
        ConnectorInfo {
            config_schema: weft_sdk::config_schema(
                &["base_url"],
                json!({ "base_url": { "type": "string", "pattern": "^https?://" } }),
            ),
            // The origins this connector may ask for; the tenant grants
            // the ones it really calls.
            outbound_hosts: vec!["*".into()],
            ..weft_sdk::package_info!()
        }
    }
}

/// Delivers a batch: every record's request first (one that cannot become
/// a request fails alone), then all of them concurrently, then each
/// record's outcome from its answer.
fn deliver_all(cfg: &Config, records: &[Record]) -> Vec<Result<(), Error>> {
    let planned: Vec<Result<Request, Error>> = records.iter().map(|r| request(cfg, r)).collect();
    let ready: Vec<Request> = planned.iter().filter_map(|p| p.clone().ok()).collect();
    let mut answers = send_all(&ready, IN_FLIGHT).into_iter();
    planned
        .into_iter()
        .zip(records)
        .map(|(plan, r)| {
            plan?;
            let resp = answers.next().expect("one answer per request")?;
            if r.op == Operation::Delete && resp.status == 404 {
                return Ok(());
            }
            resp.error_for_status(&format!("delivering {}", r.key))
                .map(|_| ())
        })
        .collect()
}

impl Destination for Connector {
    fn emit(records: Vec<Record>) -> Vec<Result<(), Error>> {
        weft_sdk::with_config(&records, |cfg: &Config| deliver_all(cfg, &records))
    }
}

export!(Connector);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_are_put_and_keys_are_encoded() {
        let cfg = Config {
            base_url: "https://api.example.com/items/".into(),
        };
        let r = Record::upsert("a b/c", "item", 1, &json!({"x": 1}));
        let req = request(&cfg, &r).unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.url, "https://api.example.com/items/a%20b%2Fc");
    }
}
