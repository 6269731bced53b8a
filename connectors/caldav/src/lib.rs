//! `caldav`: delivers calendar events to any CalDAV server (RFC 4791).
//!
//! Input records carry `user_email`, `resource` and, for upserts, `ics` (as
//! `acme-calendar` makes them). The collection URL comes from the tenant's
//! template with `{email}` in it. An upsert is a `PUT` of
//! `{collection}{resource}.ics`; when the collection does not exist and the
//! tenant allows it, the connector creates it (`MKCALENDAR`, after a `MKCOL`
//! of the parent when the server answers `409` because the parent is
//! missing) and puts again. Where each record's event may be is kept in the
//! tenant's kv (`at:{key}` → collection URLs, one a line), written *before*
//! the `PUT` (the host makes kv writes durable before a request leaves):
//! whatever happens after the request (a crash, an answer lost, a `5xx`
//! from a server that wrote the event all the same), the copy is found
//! again. When a record moves to another collection (the appointment's
//! owner changed) the old copies are deleted after the new one is written,
//! and the list narrows to the new place; a delete removes the event from
//! every place it may be, and from the collection the record names, even
//! when the record no longer names an owner (`user_email` null). A delete
//! is a `DELETE`; `404` means it was gone already. Upserts into known collections, to where the event already
//! is, go out concurrently, at most 8 at a time. `429` and `5xx` are transient (with `Retry-After`); other `4xx`
//! are invalid, with the server's answer.

weft_sdk::connector_bindings!("destination-connector");

use exports::weft::connector::destination::Guest as Destination;
use exports::weft::connector::metadata::Guest as Metadata;
use serde::Deserialize;
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashSet;
use weft_sdk::http::{Request, Response, send_all};
use weft_sdk::invalid;
use weft_sdk::types::{ConnectorInfo, Error, Operation, Record};

struct CalDav;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    collection_url: String,
    #[serde(default = "yes")]
    create_collection: bool,
}

fn yes() -> bool {
    true
}

thread_local! {
    /// Collections known to exist, for this instance's lifetime (one run).
    static READY: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Percent-encodes what may not stand in a path segment (keeps `@` and `+`).
fn segment(s: &str) -> String {
    weft_sdk::http::percent_encode(s, b"@+")
}

fn collection(cfg: &Config, email: &str) -> String {
    let mut url = cfg.collection_url.replace("{email}", &segment(email));
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

fn classify(resp: Response, what: &str) -> Result<Response, Error> {
    resp.error_for_status(what)
}

fn mk(method: &str, url: &str) -> Result<Response, Error> {
    Request::new(method, url).send()
}

/// Creates the calendar collection (and its parent if needed).
fn ensure_collection(url: &str) -> Result<(), Error> {
    let resp = mk("MKCALENDAR", url)?;
    match resp.status {
        200..=299 | 405 => Ok(()),
        409 => {
            let parent = match url.trim_end_matches('/').rfind('/') {
                Some(i) => &url[..=i],
                None => return Err(invalid(format!("cannot find the parent of {url}"))),
            };
            let p = mk("MKCOL", parent)?;
            if !(200..300).contains(&p.status) && p.status != 405 {
                classify(p, &format!("MKCOL {parent}"))?;
            }
            let again = mk("MKCALENDAR", url)?;
            if (200..300).contains(&again.status) || again.status == 405 {
                Ok(())
            } else {
                classify(again, &format!("MKCALENDAR {url}")).map(|_| ())
            }
        }
        _ => classify(resp, &format!("MKCALENDAR {url}")).map(|_| ()),
    }
}

fn put(url: &str, ics: &str) -> Result<Response, Error> {
    Request::new("PUT", url)
        .body("text/calendar; charset=utf-8", ics.as_bytes().to_vec())
        .send()
}

/// Where the event of source record `key` may be: the collection URLs it
/// was written to, or was about to be, and not deleted from since. Kept in
/// this tenant's kv so that an event follows its owner (and a delete finds
/// it) whoever the record names now. One URL a line (a URL has no line
/// break): a lone URL is what earlier versions wrote.
fn location_key(key: &str) -> String {
    format!("at:{key}")
}

fn places(key: &str) -> Vec<String> {
    weft_sdk::kv::get(&location_key(key))
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| {
            s.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn remember(key: &str, colls: &[String]) -> Result<(), Error> {
    let k = location_key(key);
    let done = if colls.is_empty() {
        weft_sdk::kv::delete(&k)
    } else {
        weft_sdk::kv::set(&k, colls.join("\n").as_bytes())
    };
    done.map_err(|e| weft_sdk::transient(format!("remembering where {key} is: {e:?}")))
}

/// Deletes `{coll}{resource}.ics`; gone already is fine.
fn delete_at(coll: &str, resource: &str) -> Result<(), Error> {
    let url = format!("{coll}{}.ics", segment(resource));
    let resp = mk("DELETE", &url)?;
    if resp.status == 404 || (200..300).contains(&resp.status) {
        Ok(())
    } else {
        classify(resp, &format!("DELETE {url}")).map(|_| ())
    }
}

fn deliver(cfg: &Config, r: &Record) -> Result<(), Error> {
    let body = r.json()?;
    let email = body["user_email"].as_str();
    let resource = body["resource"]
        .as_str()
        .ok_or_else(|| invalid(format!("record {}: no resource", r.key)))?;
    let mut places = places(&r.key);
    match r.op {
        Operation::Delete => {
            // Where it may be, and where the record says it is (events
            // written before locations were kept).
            if let Some(e) = email {
                let c = collection(cfg, e);
                if !places.contains(&c) {
                    places.push(c);
                }
            }
            for coll in &places {
                delete_at(coll, resource)?;
            }
            remember(&r.key, &[])
        }
        Operation::Upsert => {
            let email = email.ok_or_else(|| invalid(format!("record {}: no user_email", r.key)))?;
            let ics = body["ics"]
                .as_str()
                .ok_or_else(|| invalid(format!("record {}: no ics", r.key)))?;
            let coll = collection(cfg, email);
            if !places.contains(&coll) {
                // Noted before the PUT leaves: found again whatever follows.
                places.push(coll.clone());
                remember(&r.key, &places)?;
            }
            put_event(cfg, &coll, resource, ics)?;
            if places.len() > 1 {
                // The owner changed: the event lives in one calendar only.
                for old in places.iter().filter(|p| **p != coll) {
                    delete_at(old, resource)?;
                }
                remember(&r.key, std::slice::from_ref(&coll))?;
            }
            Ok(())
        }
    }
}

fn put_event(cfg: &Config, coll: &str, resource: &str, ics: &str) -> Result<(), Error> {
    let url = format!("{coll}{}.ics", segment(resource));
    let ready = READY.with(|s| s.borrow().contains(coll));
    if !ready && cfg.create_collection {
        // Cheap check first: most collections exist already.
        let resp = put(&url, ics)?;
        if (200..300).contains(&resp.status) {
            READY.with(|s| s.borrow_mut().insert(coll.to_owned()));
            return Ok(());
        }
        if !matches!(resp.status, 404 | 409) {
            return classify(resp, &format!("PUT {url}")).map(|_| ());
        }
        ensure_collection(coll)?;
        READY.with(|s| s.borrow_mut().insert(coll.to_owned()));
    }
    classify(put(&url, ics)?, &format!("PUT {url}")).map(|_| ())
}

impl Metadata for CalDav {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            description: "Calendar events to any CalDAV server".into(),
            config_schema: weft_sdk::config_schema(
                &["collection_url"],
                json!({
                    "collection_url": { "type": "string", "pattern": "^https?://.*\\{email\\}", "description": "Calendar collection URL template with {email}" },
                    "create_collection": { "type": "boolean", "default": true }
                }),
            ),
            outbound_hosts: vec!["*".into()],
            ..weft_sdk::package_info!()
        }
    }
}

/// Requests of one batch in flight at once (the host's default
/// `max_http_in_flight`).
const IN_FLIGHT: usize = 8;

/// Delivers a batch. Upserts into collections known to exist, to the same
/// collection as before, go out concurrently (the bulk of a sync); the rest
/// (a first write to a collection, a move, a delete) one by one.
fn deliver_all(cfg: &Config, records: &[Record]) -> Vec<Result<(), Error>> {
    let mut out: Vec<Option<Result<(), Error>>> = records.iter().map(|_| None).collect();
    // (record index, request, what it is).
    let mut batch: Vec<(usize, Request, String)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let simple = (|| -> Option<(Request, String)> {
            if r.op != Operation::Upsert {
                return None;
            }
            let body = r.json().ok()?;
            let coll = collection(cfg, body["user_email"].as_str()?);
            let places = places(&r.key);
            let stays = places.is_empty() || places == [coll.as_str()];
            if !stays || !READY.with(|s| s.borrow().contains(&coll)) {
                return None;
            }
            let url = format!("{coll}{}.ics", segment(body["resource"].as_str()?));
            let ics = body["ics"].as_str()?;
            if places.is_empty() {
                // Noted before the batch leaves (one flush for all).
                remember(&r.key, &[coll]).ok()?;
            }
            Some((
                Request::new("PUT", &url)
                    .body("text/calendar; charset=utf-8", ics.as_bytes().to_vec()),
                format!("PUT {url}"),
            ))
        })();
        match simple {
            Some((req, what)) => batch.push((i, req, what)),
            None => out[i] = Some(deliver(cfg, r)),
        }
    }
    let reqs: Vec<Request> = batch.iter().map(|(_, r, _)| r.clone()).collect();
    for ((i, _, what), answer) in batch.into_iter().zip(send_all(&reqs, IN_FLIGHT)) {
        out[i] = Some(match answer {
            // The collection went away meanwhile: the careful path.
            Ok(resp) if matches!(resp.status, 404 | 409) => {
                READY.with(|s| s.borrow_mut().clear());
                deliver(cfg, &records[i])
            }
            Ok(resp) => classify(resp, &what).map(|_| ()),
            Err(e) => Err(e),
        });
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(invalid("not delivered"))))
        .collect()
}

impl Destination for CalDav {
    fn emit(records: Vec<Record>) -> Vec<Result<(), Error>> {
        weft_sdk::with_config(&records, |cfg: &Config| deliver_all(cfg, &records))
    }
}

export!(CalDav);
