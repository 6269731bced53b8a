//! `__NAME__`: a weft mapper. It upper-cases the string field named by the
//! tenant's configuration (`{ "field": "title" }`) in each upserted record's
//! JSON body; deletes pass through. A record whose body is not a JSON object
//! is `invalid` (dead-lettered alone; the rest of the batch goes on).

weft_sdk::connector_bindings!("mapper-connector");

use exports::weft::connector::mapper::Guest as Mapper;
use exports::weft::connector::metadata::Guest as Metadata;
use serde::Deserialize;
use serde_json::{Value, json};
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};
use weft_sdk::{each_record, invalid};

struct Connector;

/// The tenant's configuration (checked against `config_schema` by the host
/// before any call).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    field: String,
}

/// Maps one record: the logic, kept apart from the bindings so that
/// `cargo test` runs it natively.
fn map_one(cfg: &Config, r: &Record) -> Result<Vec<Record>, Error> {
    if r.op == Operation::Delete {
        return Ok(vec![r.clone()]);
    }
    let mut body = r.json()?;
    let obj = body
        .as_object_mut()
        .ok_or_else(|| invalid(format!("record {}: the body is not a JSON object", r.key)))?;
    if let Some(Value::String(s)) = obj.get_mut(&cfg.field) {
        *s = s.to_uppercase();
    }
    Ok(vec![Record::upsert(&r.key, &r.kind, r.version, &body)])
}

impl Metadata for Connector {
    fn describe() -> ConnectorInfo {
        // Name, version and description from Cargo.toml; no streams and
        // no outbound hosts.
        ConnectorInfo {
            config_schema: weft_sdk::config_schema(
                &["field"],
                json!({ "field": { "type": "string", "minLength": 1 } }),
            ),
            ..weft_sdk::package_info!()
        }
    }
}

impl Mapper for Connector {
    fn map(records: Vec<Record>) -> Vec<Result<Vec<Record>, Error>> {
        each_record(&records, map_one)
    }
}

export!(Connector);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            field: "title".into(),
        }
    }

    #[test]
    fn upper_cases_the_configured_field() {
        let r = Record::upsert("k1", "item", 1, &json!({"title": "hello", "n": 1}));
        let out = map_one(&cfg(), &r).unwrap();
        assert_eq!(out[0].json().unwrap(), json!({"title": "HELLO", "n": 1}));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_invalid() {
        let r = Record::upsert("k1", "item", 1, &json!([1, 2]));
        assert!(matches!(map_one(&cfg(), &r), Err(Error::Invalid(_))));
    }
}
