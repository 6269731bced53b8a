//! Hostile test source: each stream attacks one promise of the sandbox, and
//! reports what it got as one record (or never returns).
//!
//! - `raw-get`: a `GET` built by hand over `wasi:http`, with the config's
//!   `scheme`, `authority` (user info and all) and `path`, so that nothing
//!   the SDK cleans up is cleaned up.
//! - `fields-flood`: creates `count` header sets of `size` bytes each and
//!   keeps them all.
//! - `pending-bodies`: starts `count` requests to `authority` and writes
//!   `size` bytes into each body without finishing any.
//! - `endless`: an empty page with a new cursor and `has-more`, forever.
//! - `long-key`: one record whose key is `size` bytes long.
//! - `long-error`: an `invalid` error of `size` bytes.
//! - `kv-flood`: sets `count` keys of 9 bytes with empty values.

weft_sdk::connector_bindings!("source-connector");

use exports::weft::connector::metadata::Guest as Metadata;
use exports::weft::connector::source::{Guest as Source, Page, Webhook};
use serde_json::{Value, json};
use weft_sdk::types::{ConnectorInfo, Error, Record, StreamInfo};
use weft_sdk::wasi::http::outgoing_handler;
use weft_sdk::wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use weft_sdk::{invalid, kv, tenant_config};

struct Hostile;

fn cfg() -> Value {
    tenant_config::<Value>().unwrap_or(json!({}))
}

fn one(body: Value) -> Result<Page, Error> {
    Ok(Page {
        records: vec![Record::upsert("result", "result", 1, &body)],
        next_cursor: None,
        has_more: false,
    })
}

fn request(c: &Value) -> Result<OutgoingRequest, String> {
    let headers = Fields::new();
    if let Some(h) = c["host_header"].as_str() {
        headers
            .append("host", h.as_bytes())
            .map_err(|e| format!("host header: {e:?}"))?;
    }
    let req = OutgoingRequest::new(headers);
    req.set_method(&Method::Get).map_err(|_| "method")?;
    let scheme = match c["scheme"].as_str().unwrap_or("http") {
        "https" => Scheme::Https,
        _ => Scheme::Http,
    };
    req.set_scheme(Some(&scheme)).map_err(|_| "scheme")?;
    req.set_authority(Some(c["authority"].as_str().unwrap_or("127.0.0.1:1")))
        .map_err(|_| "authority refused by set-authority")?;
    req.set_path_with_query(Some(c["path"].as_str().unwrap_or("/")))
        .map_err(|_| "path")?;
    Ok(req)
}

fn raw_get(c: &Value) -> Value {
    let req = match request(c) {
        Ok(r) => r,
        Err(e) => return json!({ "error": e }),
    };
    let body = req.body().expect("body");
    let future = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return json!({ "error": format!("{e:?}") }),
    };
    let _ = OutgoingBody::finish(body, None);
    let resp = loop {
        match future.get() {
            Some(r) => break r,
            None => future.subscribe().block(),
        }
    };
    match resp {
        Ok(Ok(r)) => json!({ "status": r.status() }),
        Ok(Err(e)) => json!({ "error": format!("{e:?}") }),
        Err(()) => json!({ "error": "taken" }),
    }
}

impl Metadata for Hostile {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "test-hostile".into(),
            version: "0.1.0".into(),
            description: "Attacks the sandbox".into(),
            streams: [
                "raw-get",
                "fields-flood",
                "pending-bodies",
                "endless",
                "long-key",
                "long-error",
                "kv-flood",
            ]
            .iter()
            .map(|s| StreamInfo {
                name: (*s).into(),
                description: String::new(),
            })
            .collect(),
            config_schema: "{}".into(),
            outbound_hosts: vec!["*".into()],
        }
    }
}

impl Source for Hostile {
    fn fetch(stream: String, cursor: Option<String>) -> Result<Page, Error> {
        let c = cfg();
        let count = c["count"].as_u64().unwrap_or(1000) as usize;
        let size = c["size"].as_u64().unwrap_or(1024) as usize;
        match stream.as_str() {
            "raw-get" => one(raw_get(&c)),
            "fields-flood" => {
                let mut kept = Vec::new();
                let value = vec![b'x'; size];
                for i in 0..count {
                    let f = Fields::new();
                    if let Err(e) = f.append("x-flood", &value) {
                        return one(json!({ "created": i, "error": format!("append: {e:?}") }));
                    }
                    kept.push(f);
                }
                one(json!({ "created": kept.len() }))
            }
            "pending-bodies" => {
                let mut kept = Vec::new();
                let chunk = vec![b'y'; 4096];
                for i in 0..count {
                    let req = match request(&c) {
                        Ok(r) => r,
                        Err(e) => return one(json!({ "started": i, "error": e })),
                    };
                    let body = req.body().expect("body");
                    let future = match outgoing_handler::handle(req, None) {
                        Ok(f) => f,
                        Err(e) => {
                            return one(json!({ "started": i, "error": format!("{e:?}") }));
                        }
                    };
                    let stream = body.write().expect("stream");
                    let mut written = 0;
                    while written < size {
                        let n = chunk.len().min(size - written);
                        if let Err(e) = stream.blocking_write_and_flush(&chunk[..n]) {
                            return one(
                                json!({ "started": i + 1, "error": format!("write: {e:?}") }),
                            );
                        }
                        written += n;
                    }
                    kept.push((future, stream, body));
                }
                one(json!({ "started": kept.len() }))
            }
            "endless" => {
                let n: u64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
                Ok(Page {
                    records: vec![],
                    next_cursor: Some((n + 1).to_string()),
                    has_more: true,
                })
            }
            "long-key" => Ok(Page {
                records: vec![Record::upsert("k".repeat(size), "thing", 1, &json!({}))],
                next_cursor: None,
                has_more: false,
            }),
            "long-error" => Err(invalid("e".repeat(size))),
            "kv-flood" => {
                for i in 0..count {
                    if let Err(e) = kv::set(&format!("k{i:08}"), b"") {
                        return one(json!({ "set": i, "error": format!("{e:?}") }));
                    }
                }
                one(json!({ "set": count }))
            }
            other => Err(invalid(format!("no stream {other}"))),
        }
    }

    fn on_webhook(_delivery: Webhook) -> Result<Vec<Record>, Error> {
        Ok(vec![])
    }
}

export!(Hostile);
