//! `acme-calendar`: maps an enriched Acme appointment (from `acme-crm`) to
//! one iCalendar event for the `caldav` destination.
//!
//! The event's UID is `acme-{appointment id}@{uid_namespace}` and its
//! resource name `acme-{appointment id}`, stable across changes, so a change
//! replaces the event instead of adding one. Times are written in UTC
//! (`DTSTART:…Z`), which every client shows in its own zone; the Acme time
//! zone is kept in `X-ACME-TIMEZONE`. The customer's name, phone (as typed)
//! and email are in the description, and as `CONTACT` and `ATTENDEE` where
//! they fit. Per tenant: default duration, title template, statuses to sync,
//! whether cancelled events are kept (`STATUS:CANCELLED`) or removed, and
//! explicit user mappings. An appointment with no start time or whose
//! contact does not exist is `invalid` with the reason (an event already in
//! a calendar stays as it was). An appointment whose owner has no user of
//! ours is removed from wherever its event is and dead-lettered with a
//! reason naming the owner (the host's retract convention,
//! [`weft_sdk::DEAD_LETTER_FIELD`]). Deletes, and appointments that leave
//! the synced statuses, become deletes whatever their owner.

weft_sdk::connector_bindings!("mapper-connector");

use acme_common::{UserMatching, instant, user_matching_properties};
use chrono::{DateTime, Duration, Utc};
use exports::weft::connector::mapper::Guest as Mapper;
use exports::weft::connector::metadata::Guest as Metadata;
use serde::Deserialize;
use serde_json::{Value, json};
use weft_sdk::invalid;
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};

struct AcmeCalendar;

/// The host checks the config against the schema in `describe` (which
/// refuses unknown keys); `flatten` rules out `deny_unknown_fields` here.
#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_namespace")]
    uid_namespace: String,
    #[serde(default = "default_duration")]
    default_duration_minutes: i64,
    #[serde(default = "default_template")]
    title_template: String,
    #[serde(default)]
    keep_cancelled: bool,
    #[serde(default = "default_statuses")]
    statuses: Vec<String>,
    #[serde(flatten)]
    users: UserMatching,
}

fn default_namespace() -> String {
    "weft".into()
}
fn default_duration() -> i64 {
    30
}
fn default_template() -> String {
    "{title}".into()
}
fn default_statuses() -> Vec<String> {
    vec!["scheduled".into(), "completed".into()]
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(';', "\\;")
        .replace(',', "\\,")
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "")
}

/// A parameter value, quoted when it must be (RFC 5545 §3.2).
fn param(s: &str) -> String {
    let clean: String = s.chars().filter(|c| *c != '"' && !c.is_control()).collect();
    if clean.contains([':', ';', ',']) {
        format!("\"{clean}\"")
    } else {
        clean
    }
}

/// Folds a content line at 75 octets (RFC 5545 §3.1), on character
/// boundaries.
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
    out
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn customer_name(contact: &Value) -> String {
    let first = contact["first_name"].as_str().unwrap_or("").trim();
    let last = contact["last_name"].as_str().unwrap_or("").trim();
    format!("{first} {last}").trim().to_owned()
}

fn render_title(template: &str, apt: &Value, customer: &str) -> String {
    let title = apt["title"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Meeting with {customer}"));
    let t = template
        .replace("{title}", &title)
        .replace("{customer}", customer)
        .replace("{location}", apt["location"].as_str().unwrap_or(""))
        .replace("{status}", apt["status"].as_str().unwrap_or(""));
    if t.trim().is_empty() {
        title
    } else {
        t.trim().to_owned()
    }
}

fn ics(
    cfg: &Config,
    apt: &Value,
    contact: &Value,
    owner_email: &str,
    uid: &str,
    cancelled: bool,
) -> Result<String, Error> {
    let id = apt["id"].as_str().unwrap_or("");
    let start = apt["starts_at"].as_str().ok_or_else(|| {
        invalid(format!(
            "appointment {id} has no start time (starts_at is null)"
        ))
    })?;
    let start = instant(start).map_err(|e| invalid(format!("appointment {id}: starts_at {e}")))?;
    let end = match apt["ends_at"].as_str() {
        Some(e) => instant(e).map_err(|e| invalid(format!("appointment {id}: ends_at {e}")))?,
        None => start + Duration::minutes(cfg.default_duration_minutes),
    };
    let end = if end <= start {
        start + Duration::minutes(cfg.default_duration_minutes)
    } else {
        end
    };
    let stamp = apt["updated_at"]
        .as_str()
        .and_then(|u| instant(u).ok())
        .unwrap_or(start);
    let name = customer_name(contact);
    let phone = contact["phone"].as_str();
    let email = contact["email"].as_str();
    let mut description = format!("Customer: {name}");
    if let Some(p) = phone {
        description.push_str(&format!("\nPhone: {p}"));
    }
    if let Some(e) = email {
        description.push_str(&format!("\nEmail: {e}"));
    }
    if let Some(n) = apt["notes"].as_str().filter(|n| !n.is_empty()) {
        description.push_str(&format!("\n\n{n}"));
    }
    let contact_line: Vec<&str> = [Some(name.as_str()), phone, email]
        .into_iter()
        .flatten()
        .collect();
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        format!(
            "PRODID:-//weft//acme-calendar {}//EN",
            env!("CARGO_PKG_VERSION")
        ),
        "CALSCALE:GREGORIAN".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{uid}"),
        format!("DTSTAMP:{}", utc(stamp)),
        format!("LAST-MODIFIED:{}", utc(stamp)),
        format!("DTSTART:{}", utc(start)),
        format!("DTEND:{}", utc(end)),
        format!(
            "SUMMARY:{}",
            text(&render_title(&cfg.title_template, apt, &name))
        ),
        format!("DESCRIPTION:{}", text(&description)),
        format!("CONTACT:{}", text(&contact_line.join(", "))),
        format!(
            "STATUS:{}",
            if cancelled { "CANCELLED" } else { "CONFIRMED" }
        ),
        format!("ORGANIZER:mailto:{owner_email}"),
    ];
    if let Some(loc) = apt["location"].as_str().filter(|l| !l.is_empty()) {
        lines.push(format!("LOCATION:{}", text(loc)));
    }
    if let Some(e) = email {
        lines.push(format!(
            "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT:mailto:{e}",
            param(&name)
        ));
    }
    lines.push(format!("X-ACME-APPOINTMENT-ID:{}", text(id)));
    if let Some(tz) = apt["timezone"].as_str() {
        lines.push(format!("X-ACME-TIMEZONE:{}", text(tz)));
    }
    lines.push("END:VEVENT".to_owned());
    lines.push("END:VCALENDAR".to_owned());
    Ok(lines.iter().map(|l| fold(l)).collect())
}

fn map_one(cfg: &Config, r: &Record) -> Result<Vec<Record>, Error> {
    let body = r.json()?;
    let apt = &body["appointment"];
    let id = apt["id"].as_str().unwrap_or(&r.key);
    let resource = format!("acme-{id}");
    let uid = format!("acme-{id}@{}", cfg.uid_namespace);
    let owner = cfg.users.our_user(&body["owner"]);
    let out = |op: Operation, user_email: Option<&str>, extra: Value| {
        let mut b = json!({ "user_email": user_email, "resource": resource, "uid": uid });
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Record {
            key: r.key.clone(),
            kind: "calendar-event".into(),
            version: r.version,
            op,
            body: b.to_string(),
        }
    };
    let status = apt["status"].as_str().unwrap_or("scheduled");
    let cancelled = status == "cancelled";
    let wanted = cfg.statuses.iter().any(|s| s == status) || (cancelled && cfg.keep_cancelled);
    if r.op == Operation::Delete || !wanted {
        // A removal needs no owner: the destination knows where the event
        // is. An owner we cannot match never blocks one.
        return Ok(vec![out(
            Operation::Delete,
            owner.as_deref().ok(),
            json!({}),
        )]);
    }
    let owner_email = match owner {
        Ok(o) => o,
        // The event must not stay in the calendar of someone who is no
        // longer the owner: remove it wherever it is, and dead-letter the
        // appointment with the reason (the host's retract convention).
        Err(e) => {
            let field = weft_sdk::DEAD_LETTER_FIELD;
            return Ok(vec![out(
                Operation::Delete,
                None,
                json!({ field: format!("appointment {id}: {e}") }),
            )]);
        }
    };
    let contact = &body["contact"];
    // The `missing-contact-events` build (a test's "fixed" version 1.0.1,
    // `tests/components/acme-calendar-fixed`) makes such an appointment an
    // event without the customer's details instead.
    if contact.is_null() && !cfg!(feature = "missing-contact-events") {
        return Err(invalid(format!(
            "appointment {id}: contact {} does not exist",
            apt["contact_id"].as_str().unwrap_or("(none)")
        )));
    }
    let ics = ics(cfg, apt, contact, &owner_email, &uid, cancelled)?;
    Ok(vec![out(
        Operation::Upsert,
        Some(&owner_email),
        json!({ "ics": ics }),
    )])
}

impl Metadata for AcmeCalendar {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            // Not the package's name: tests build this source as the
            // package `acme-calendar-fixed` too, a later version of this
            // connector.
            name: "acme-calendar".into(),
            description: "Acme appointments to iCalendar events".into(),
            config_schema: {
                let mut properties = json!({
                    "uid_namespace": { "type": "string", "minLength": 1, "description": "Ends every event UID; use the tenant's ID" },
                    "default_duration_minutes": { "type": "integer", "minimum": 1, "default": 30 },
                    "title_template": { "type": "string", "default": "{title}", "description": "{title}, {customer}, {location}, {status}" },
                    "keep_cancelled": { "type": "boolean", "default": false },
                    "statuses": { "type": "array", "items": { "enum": ["scheduled", "completed", "cancelled"] } }
                });
                if let (Some(p), Some(u)) = (
                    properties.as_object_mut(),
                    user_matching_properties().as_object(),
                ) {
                    p.extend(u.clone());
                }
                weft_sdk::config_schema(&[], properties)
            },
            ..weft_sdk::package_info!()
        }
    }
}

impl Mapper for AcmeCalendar {
    fn map(records: Vec<Record>) -> Vec<Result<Vec<Record>, Error>> {
        weft_sdk::each_record(&records, map_one)
    }
}

export!(AcmeCalendar);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_escaping() {
        let long = format!("SUMMARY:{}", "é".repeat(60));
        let folded = fold(&long);
        assert!(folded.split("\r\n").all(|l| l.len() <= 75));
        assert_eq!(text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
        assert_eq!(param("O'Brien, Siobhán"), "\"O'Brien, Siobhán\"");
    }
}
