//! Test destination: delivers each record to `{url}/records/{key}` with
//! `PUT` (upsert) or `DELETE` (delete); `404` on delete is success. HTTP
//! answers map to weft's error classes through the SDK. A body with
//! `"reject": true` is refused as `invalid` without a request; the config's
//! `panic_on_key` makes a batch holding that key trap. The url
//! `discard:` accepts everything without a request (benchmarks).

weft_sdk::connector_bindings!("destination-connector");

use exports::weft::connector::destination::Guest as Destination;
use exports::weft::connector::metadata::Guest as Metadata;
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};
use weft_sdk::{invalid, tenant_config};

struct TestDestination;

impl Metadata for TestDestination {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "test-destination".into(),
            version: "2.0.0".into(),
            description: "Test destination for the host's own tests".into(),
            streams: vec![],
            config_schema: json!({
                "type": "object",
                "required": ["url"],
                "properties": { "url": { "type": "string" }, "panic_on_key": { "type": "string" } },
                "additionalProperties": false
            })
            .to_string(),
            outbound_hosts: vec!["*".into()],
        }
    }
}

fn deliver(base: &str, r: &Record) -> Result<(), Error> {
    let body = r.json()?;
    if body["reject"] == json!(true) {
        return Err(invalid(format!("record {} is marked reject", r.key)));
    }
    let url = format!("{}/records/{}", base.trim_end_matches('/'), r.key);
    match r.op {
        Operation::Upsert => {
            Request::new("PUT", &url)
                .json(&body)
                .send()?
                .error_for_status("PUT")?;
        }
        Operation::Delete => {
            let resp = Request::new("DELETE", &url).send()?;
            if resp.status != 404 {
                resp.error_for_status("DELETE")?;
            }
        }
    }
    Ok(())
}

impl Destination for TestDestination {
    fn emit(records: Vec<Record>) -> Vec<Result<(), Error>> {
        let base = match tenant_config::<Value>().map(|c| c["url"].as_str().map(str::to_owned)) {
            Ok(Some(u)) => u,
            Ok(None) => {
                return records
                    .iter()
                    .map(|_| Err(Error::Config("no url configured".into())))
                    .collect();
            }
            Err(e) => return records.iter().map(|_| Err(e.clone())).collect(),
        };
        // `panic_on_key`: the destination traps when the batch holds it.
        if let Ok(cfg) = tenant_config::<Value>()
            && let Some(k) = cfg["panic_on_key"].as_str()
            && records.iter().any(|r| r.key == k)
        {
            panic!("test destination: record {k} asked to panic");
        }
        if base == "discard:" {
            return records.iter().map(|_| Ok(())).collect();
        }
        records.iter().map(|r| deliver(&base, r)).collect()
    }
}

export!(TestDestination);
