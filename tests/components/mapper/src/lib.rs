//! Test mapper: doubles `n` in each record's body. Records whose `n` is a
//! multiple of the config's `reject_multiple_of` are `invalid`; a body with
//! `"transient": true` is a transient error; `fanout` makes several records of
//! one; `wrong_count: true` breaks the contract (one outcome too few);
//! `filter_odd: true` turns records with an odd `n` into deletes (a filter
//! they leave); `retract_multiple_of` turns records whose `n` is a multiple
//! of it into deletes that ask the host to retract and dead-letter them;
//! `panic_multiple_of` makes the mapper panic (trap) on such a record.
//! Built with the `fixed` feature (crate `test-mapper-v2`) it is version
//! 0.5.0 and rejects nothing: the "fixed connector" of replay tests.

weft_sdk::connector_bindings!("mapper-connector");

use exports::weft::connector::mapper::Guest as Mapper;
use exports::weft::connector::metadata::Guest as Metadata;
use serde_json::{Value, json};
use weft_sdk::types::{ConnectorInfo, Error, Record};
use weft_sdk::{invalid, tenant_config, transient};

struct TestMapper;

impl Metadata for TestMapper {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "test-mapper".into(),
            version: if cfg!(feature = "fixed") {
                "0.5.0"
            } else {
                "0.4.0"
            }
            .into(),
            description: "Test mapper for the host's own tests".into(),
            streams: vec![],
            config_schema: json!({
                "type": "object",
                "properties": {
                    "reject_multiple_of": { "type": "integer", "minimum": 1 },
                    "fanout": { "type": "integer", "minimum": 0 },
                    "wrong_count": { "type": "boolean" },
                    "filter_odd": { "type": "boolean" },
                    "retract_multiple_of": { "type": "integer", "minimum": 1 },
                    "panic_multiple_of": { "type": "integer", "minimum": 1 }
                },
                "additionalProperties": false
            })
            .to_string(),
            outbound_hosts: vec![],
        }
    }
}

fn map_one(r: &Record, cfg: &Value) -> Result<Vec<Record>, Error> {
    let body = r.json()?;
    if body["transient"] == json!(true) {
        return Err(transient("mapper dependency unavailable"));
    }
    let n = body["n"]
        .as_i64()
        .ok_or_else(|| invalid(format!("record {} has no integer `n`", r.key)))?;
    if let Some(m) = cfg["panic_multiple_of"].as_i64()
        && n % m == 0
    {
        panic!("test mapper: n={n} is a multiple of {m}");
    }
    if let Some(m) = cfg["reject_multiple_of"].as_i64()
        && n % m == 0
        && !cfg!(feature = "fixed")
    {
        return Err(invalid(format!(
            "record {}: n={n} is a multiple of {m}",
            r.key
        )));
    }
    let delete = |extra: Value| {
        let mut body = json!({ "n": n });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Ok(vec![Record {
            key: r.key.clone(),
            kind: "mapped".into(),
            version: r.version,
            op: weft_sdk::Operation::Delete,
            body: body.to_string(),
        }])
    };
    if let Some(m) = cfg["retract_multiple_of"].as_i64()
        && n % m == 0
    {
        let field = weft_sdk::DEAD_LETTER_FIELD;
        return delete(
            json!({ field: format!("record {}: n={n} cannot go there any more", r.key) }),
        );
    }
    if cfg["filter_odd"] == json!(true) && n % 2 == 1 {
        return delete(json!({}));
    }
    let fanout = cfg["fanout"].as_u64().unwrap_or(1);
    Ok((0..fanout)
        .map(|i| {
            let key = if fanout == 1 {
                r.key.clone()
            } else {
                format!("{}-{i}", r.key)
            };
            Record {
                key,
                kind: "mapped".into(),
                version: r.version,
                op: r.op,
                body: json!({ "n": n, "doubled": n * 2 }).to_string(),
            }
        })
        .collect())
}

impl Mapper for TestMapper {
    fn map(records: Vec<Record>) -> Vec<Result<Vec<Record>, Error>> {
        let cfg = match tenant_config::<Value>() {
            Ok(c) => c,
            Err(e) => return records.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out: Vec<_> = records.iter().map(|r| map_one(r, &cfg)).collect();
        if cfg["wrong_count"] == json!(true) {
            out.pop();
        }
        out
    }
}

export!(TestMapper);
