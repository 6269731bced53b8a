//! `acme-touchpoints`: maps enriched Acme activities (from `acme-crm`) to
//! touch-points of our dashboard. Emails and calls become `email` and
//! `phone` touch-points keyed by `(acme, activity id)`; activities of other
//! types (including one whose type changed away from email or call) and
//! deleted activities become deletes, whoever their owner. An activity whose
//! contact no longer exists still counts, with the contact's fields null. An
//! owner with no user of ours is `invalid`, naming the owner.

weft_sdk::connector_bindings!("mapper-connector");

use acme_common::{UserMatching, user_matching_properties};
use exports::weft::connector::mapper::Guest as Mapper;
use exports::weft::connector::metadata::Guest as Metadata;
use serde_json::{Value, json};
use weft_sdk::invalid;
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};

struct AcmeTouchpoints;

fn name(contact: &Value) -> Value {
    let first = contact["first_name"].as_str().unwrap_or("").trim();
    let last = contact["last_name"].as_str().unwrap_or("").trim();
    let full = format!("{first} {last}").trim().to_owned();
    if full.is_empty() {
        Value::Null
    } else {
        json!(full)
    }
}

fn map_one(users: &UserMatching, r: &Record) -> Result<Vec<Record>, Error> {
    let body = r.json()?;
    let act = &body["activity"];
    let id = act["id"].as_str().unwrap_or(&r.key);
    let out = |op, touchpoint: Value| Record {
        key: r.key.clone(),
        kind: "touchpoint".into(),
        version: r.version,
        op,
        body: json!({ "source": "acme", "external_id": id, "touchpoint": touchpoint }).to_string(),
    };
    let channel = match act["type"].as_str() {
        Some("email") => Some("email"),
        Some("call") => Some("phone"),
        _ => None,
    };
    // A delete needs no owner, and an activity that is no longer an email
    // or a call (its type changed) is no longer a touch-point: both remove
    // it. The host sends no delete for what never reached the dashboard.
    let Some(channel) = channel.filter(|_| r.op != Operation::Delete) else {
        return Ok(vec![out(Operation::Delete, Value::Null)]);
    };
    let user_email = users
        .our_user(&body["owner"])
        .map_err(|e| invalid(format!("activity {id}: {e}")))?;
    let occurred_at = act["occurred_at"]
        .as_str()
        .ok_or_else(|| invalid(format!("activity {id} has no occurred_at")))?;
    let contact = &body["contact"];
    Ok(vec![out(
        Operation::Upsert,
        json!({
            "user_email": user_email,
            "channel": channel,
            "direction": act["direction"].as_str().unwrap_or("outbound"),
            "occurred_at": occurred_at,
            "contact": {
                "name": name(contact),
                "email": contact["email"],
                "phone": contact["phone"],
            }
        }),
    )])
}

impl Metadata for AcmeTouchpoints {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            description: "Acme email and call activities to dashboard touch-points".into(),
            config_schema: weft_sdk::config_schema(&[], user_matching_properties()),
            ..weft_sdk::package_info!()
        }
    }
}

impl Mapper for AcmeTouchpoints {
    fn map(records: Vec<Record>) -> Vec<Result<Vec<Record>, Error>> {
        weft_sdk::each_record(&records, map_one)
    }
}

export!(AcmeTouchpoints);
