//! Test source: each stream name exercises one path of the host.
//!
//! - `numbers`: pages of `total` records (config), `page_size` a page; the
//!   cursor is the next offset.
//! - `dupes`: two pages with repeated keys and an out-of-order revision.
//! - `transient`, `invalid`, `config`: return that error class.
//! - `loop`, `memory`, `recursion`, `panic`, `huge-batch`, `huge-body`,
//!   `sleep-in-host`: misbehave so that a limit must stop them.
//! - `http`: `GET` the config's `url` (following up to 3 redirects itself)
//!   and return what happened as one record, after writing the config's
//!   `note` (when set) to kv key `note`; `http-post` does a `POST`
//!   (of `post_bytes` bytes, if configured).
//! - `kv`: write, read back and list keys; `kv-big` writes an oversized value.
//! - `log`: logs through the `log` import and prints to stdout and stderr.
//! - `ambient`: reports what it can see of env, args, files and sockets.
//! - `echo-config`: returns the tenant config.

weft_sdk::connector_bindings!("source-connector");

use exports::weft::connector::metadata::Guest as Metadata;
use exports::weft::connector::source::{Guest as Source, Page, Webhook};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::types::{ConnectorInfo, Error, Record, StreamInfo, TransientError};
use weft_sdk::{invalid, kv, log, tenant_config};

struct TestSource;

fn cfg() -> Value {
    tenant_config::<Value>().unwrap_or(json!({}))
}

fn http_record(req: Request) -> Result<Page, Error> {
    let mut req = req;
    let mut hops = Vec::new();
    let result = loop {
        match req.send() {
            Ok(resp) if (300..400).contains(&resp.status) && hops.len() < 3 => {
                let Some(location) = resp.header("location") else {
                    break Ok(resp);
                };
                hops.push(location.to_owned());
                req = Request::get(location);
            }
            other => break other,
        }
    };
    let body = match result {
        Ok(resp) => json!({
            "status": resp.status,
            "body": resp.text(),
            "retry_after_ms": resp.retry_after_ms(),
            "redirects": hops,
        }),
        Err(e) => json!({ "error": format!("{e:?}"), "redirects": hops }),
    };
    only_page(vec![Record::upsert("http", "http-result", 1, &body)])
}

/// The only page of a stream: `records`, nothing after them.
fn only_page(records: Vec<Record>) -> Result<Page, Error> {
    Ok(Page {
        records,
        next_cursor: None,
        has_more: false,
    })
}

/// Recurses `limit` deep. The values live across the call stay in wasm
/// locals (nothing takes their address), so each frame costs wasm stack, not
/// the shadow stack in linear memory, and the combination after the call
/// keeps LLVM from turning the recursion into a loop.
#[inline(never)]
fn recurse(n: u64, limit: u64) -> u64 {
    if n >= limit {
        return n;
    }
    let a = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = a.rotate_left(7) ^ n;
    let c = b.wrapping_add(a);
    let r = recurse(n + 1, limit);
    r.wrapping_sub(a).rotate_left((b & 63) as u32) ^ c
}

impl Metadata for TestSource {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "test-source".into(),
            version: "1.2.3".into(),
            description: "Test source for the host's own tests".into(),
            streams: [
                "numbers",
                "dupes",
                "transient",
                "invalid",
                "config",
                "loop",
                "memory",
                "recursion",
                "panic",
                "huge-batch",
                "huge-body",
                "http",
                "http-auth-header",
                "http-post",
                "kv",
                "kv-big",
                "log",
                "ambient",
                "echo-config",
            ]
            .iter()
            .map(|s| StreamInfo {
                name: (*s).into(),
                description: format!("test behaviour {s}"),
            })
            .collect(),
            config_schema: json!({
                "type": "object",
                "properties": {
                    "total": { "type": "integer", "minimum": 0 },
                    "page_size": { "type": "integer", "minimum": 1 },
                    "url": { "type": "string" }
                },
                "additionalProperties": false
            })
            .to_string(),
            outbound_hosts: vec![
                "http://127.0.0.1:*".into(),
                "http://localhost:*".into(),
                "http://evil.test:*".into(),
                "http://metadata.test:*".into(),
            ],
        }
    }
}

impl Source for TestSource {
    fn fetch(stream: String, cursor: Option<String>) -> Result<Page, Error> {
        let c = cfg();
        // The http streams' URL: a closed port unless configured.
        let url = c["url"].as_str().unwrap_or("http://127.0.0.1:1/");
        match stream.as_str() {
            "numbers" => {
                let total = c["total"].as_u64().unwrap_or(10);
                let size = c["page_size"].as_u64().unwrap_or(3);
                let from: u64 = match &cursor {
                    Some(s) => s
                        .parse()
                        .map_err(|_| invalid(format!("bad cursor {s:?}")))?,
                    None => 0,
                };
                let to = (from + size).min(total);
                let records = (from..to)
                    .map(|i| {
                        Record::upsert(format!("n{i}"), "number", i as i64, &json!({ "n": i }))
                    })
                    .collect();
                Ok(Page {
                    records,
                    next_cursor: Some(to.to_string()),
                    has_more: to < total,
                })
            }
            "dupes" => {
                // Page 0 repeats a key within the page; page 1 brings an old
                // revision of `a` after a newer one, and a newer `b`.
                let r =
                    |k: &str, v: i64| Record::upsert(k, "thing", v, &json!({ "n": v, "key": k }));
                let (records, next, more) = match cursor.as_deref() {
                    None => (vec![r("a", 2), r("a", 1), r("b", 1)], "1", true),
                    Some("1") => (vec![r("a", 1), r("b", 3)], "2", false),
                    _ => (vec![], "2", false),
                };
                Ok(Page {
                    records,
                    next_cursor: Some(next.into()),
                    has_more: more,
                })
            }
            "transient" => Err(Error::Transient(TransientError {
                message: "upstream busy".into(),
                retry_after_ms: Some(1500),
            })),
            "invalid" => Err(invalid("this input can never work")),
            "config" => Err(Error::Config("api key rejected".into())),
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let n = recurse(0, std::hint::black_box(u64::MAX));
                Err(invalid(format!("unreachable {n}")))
            }
            "panic" => panic!("test source panicked on purpose"),
            "huge-batch" => {
                let n = c["total"].as_u64().unwrap_or(50_000);
                let records = (0..n)
                    .map(|i| Record::upsert(format!("n{i}"), "number", i as i64, &json!(i)))
                    .collect();
                only_page(records)
            }
            "huge-body" => {
                let body = json!({ "blob": "x".repeat(2 << 20) });
                only_page(vec![Record::upsert("big", "blob", 1, &body)])
            }
            "http" => {
                if let Some(note) = c["note"].as_str() {
                    kv::set("note", note.as_bytes()).map_err(|e| invalid(format!("{e:?}")))?;
                }
                http_record(Request::get(url).header("x-test", "1"))
            }
            "http-auth-header" => {
                // Tries to set the credential header itself: the host forbids it.
                http_record(Request::get(url).header("authorization", "Bearer guest-made-this-up"))
            }
            "http-post" => {
                // `post_bytes`: a body that long (the host refuses some
                // requests while their body is being written).
                let hello = match c["post_bytes"].as_u64() {
                    Some(n) => "x".repeat(n as usize),
                    None => "world".to_owned(),
                };
                http_record(Request::new("POST", url).json(&json!({ "hello": hello })))
            }
            "kv" => {
                kv::set("user:1", b"dana").map_err(|e| invalid(format!("{e:?}")))?;
                kv::set("user:2", b"ola").map_err(|e| invalid(format!("{e:?}")))?;
                let got = kv::get("user:1").map_err(|e| invalid(format!("{e:?}")))?;
                let keys = kv::list_keys("user:", 10).map_err(|e| invalid(format!("{e:?}")))?;
                let previous = kv::get("counter").map_err(|e| invalid(format!("{e:?}")))?;
                let count = previous
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                kv::set("counter", count.to_string().as_bytes())
                    .map_err(|e| invalid(format!("{e:?}")))?;
                let body = json!({
                    "user1": got.map(|v| String::from_utf8_lossy(&v).into_owned()),
                    "keys": keys,
                    "counter": count,
                });
                only_page(vec![Record::upsert("kv", "kv-result", 1, &body)])
            }
            "kv-big" => {
                let r = kv::set("big", &vec![0u8; 1 << 20]);
                let body = json!({ "error": r.err().map(|e| format!("{e:?}")) });
                only_page(vec![Record::upsert("kv", "kv-result", 1, &body)])
            }
            "log" => {
                weft_sdk::log_line(log::Level::Info, "fetching", &[("stream", "log")]);
                println!("hello from stdout");
                eprintln!("hello from stderr");
                for i in 0..5000 {
                    weft_sdk::log_line(log::Level::Debug, &format!("line {i}"), &[]);
                }
                only_page(vec![])
            }
            "ambient" => {
                // What a guest can see of the machine: nothing.
                let body = json!({
                    "env": std::env::vars().count(),
                    "args": std::env::args().count(),
                    "fs_root": std::fs::read_dir("/").map(|_| "readable".to_owned()).unwrap_or_else(|e| e.to_string()),
                    "fs_cwd": std::fs::read_dir(".").map(|_| "readable".to_owned()).unwrap_or_else(|e| e.to_string()),
                    "tcp": std::net::TcpStream::connect("127.0.0.1:9").map(|_| "connected".to_owned()).unwrap_or_else(|e| e.to_string()),
                });
                only_page(vec![Record::upsert("ambient", "ambient", 1, &body)])
            }
            "echo-config" => only_page(vec![Record::upsert("config", "config", 1, &c)]),
            other => Err(invalid(format!("unknown stream {other:?}"))),
        }
    }

    fn on_webhook(delivery: Webhook) -> Result<Vec<Record>, Error> {
        let v: Value = serde_json::from_slice(&delivery.body)
            .map_err(|e| invalid(format!("webhook body is not JSON: {e}")))?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| invalid("webhook body has no string `id`"))?;
        let version = v["version"].as_i64().unwrap_or(0);
        let event = delivery
            .headers
            .iter()
            .find(|(k, _)| k == "x-event")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let record = if event == "deleted" {
            Record::delete(id, "thing", version, &v)
        } else {
            Record::upsert(id, "thing", version, &v)
        };
        Ok(vec![record])
    }
}

export!(TestSource);
