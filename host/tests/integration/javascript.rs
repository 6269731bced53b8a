//! Connectors written in JavaScript (componentize-js) in real flows: the
//! `rename-js` mapper of `connectors/`, and a test mapper that throws an
//! uncaught exception on one record. The components come from
//! `make guests-js` (`target/guests/js/<name>.wasm`).

use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use weft::Host;
use weft::state::RunOutcome;
use weft_test_artifacts as artifacts;

/// The JavaScript component `name`, built by `make guests-js`.
fn js_component(name: &str) -> PathBuf {
    guest_component("js", name, "guests-js")
}

/// The last segment of a request's path: the record key of
/// `{url}/records/{key}`.
fn key_of(s: &Seen) -> String {
    s.path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// A configuration with `flows`. The flows of a test share one host, so
/// that each JavaScript component (12 MiB) is compiled once per test.
fn config_text(data_dir: &Path, flows: &[String]) -> String {
    config_head(data_dir, 20000) + &flows.concat()
}

/// A host with the test source, mapper and destination and the given
/// JavaScript components registered.
async fn host(text: &str, js: &[&str]) -> Host {
    let js: Vec<PathBuf> = js.iter().map(|n| js_component(n)).collect();
    let mut files: Vec<&Path> = vec![
        artifacts::TEST_SOURCE.as_ref(),
        artifacts::TEST_MAPPER.as_ref(),
        artifacts::TEST_DESTINATION.as_ref(),
    ];
    files.extend(js.iter().map(PathBuf::as_path));
    host_with(text, &files).await
}

async fn run(h: &Host, flow: &str) -> weft::state::RunRecord {
    run_manual(h, flow).await
}

/// Runs `flow`, which must end needing attention: its error.
async fn needs_attention(h: &Host, flow: &str) -> String {
    let r = run(h, flow).await;
    assert_eq!(r.outcome, RunOutcome::NeedsAttention, "{r:?}");
    r.error.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_js_reshapes_records_by_configuration() {
    let (all, kept, objects) = (Sink::default(), Sink::default(), Sink::default());
    let (s1, s2, s3) = (all.serve().await, kept.serve().await, objects.serve().await);
    let dir = tempfile::tempdir().unwrap();
    let flows = [
        // test-mapper makes {"n": i, "doubled": 2i}; rename-js renames both,
        // keeps them and a field no record has, and sets the kind.
        acme_flow(
            "renamed",
            "numbers",
            "{ total = 12, page_size = 5 }",
            r#"{ connector = "test-mapper@0.4.0", config = {} },
               { connector = "rename-js@^1", config = { rename = { doubled = "twice", n = "number" }, keep = ["twice", "number", "absent"], kind = "renamed" } }"#,
            &test_destination(&s1.url("")),
        ),
        // Only what `keep` names stays, by its new name.
        acme_flow(
            "kept",
            "numbers",
            "{ total = 3, page_size = 3 }",
            r#"{ connector = "test-mapper@0.4.0", config = {} },
               { connector = "rename-js@1.0.0", config = { rename = { doubled = "twice" }, keep = ["twice"] } }"#,
            &test_destination(&s2.url("")),
        ),
        // The bodies of this stream are numbers, not JSON objects.
        acme_flow(
            "not_objects",
            "huge-batch",
            "{ total = 3 }",
            r#"{ connector = "rename-js@^1", config = { rename = { n = "number" } } }"#,
            &test_destination(&s3.url("")),
        ),
        // A configuration outside rename-js's schema.
        acme_flow(
            "bad_config",
            "numbers",
            "{ total = 1 }",
            r#"{ connector = "rename-js@^1", config = { rename = { n = 7 } } }"#,
            &test_destination(&s3.url("")),
        ),
    ];
    let h = host(&config_text(dir.path(), &flows), &["rename-js"]).await;

    let r = run(&h, "renamed").await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        (r.fetched, r.mapped, r.emitted, r.dead_lettered),
        (12, 24, 12, 0),
        "mapped counts each mapper's outputs"
    );
    assert!(
        r.connectors.contains(&"rename-js@1.0.0".to_string()),
        "{:?}",
        r.connectors
    );
    let got = all.records();
    assert_eq!(got.len(), 12);
    for i in 0..12 {
        assert_eq!(
            got[&format!("n{i}")],
            json!({ "twice": 2 * i, "number": i }),
            "n{i}"
        );
    }

    let r = run(&h, "kept").await;
    assert_eq!((r.outcome, r.emitted), (RunOutcome::Succeeded, 3));
    assert_eq!(kept.records()["n2"], json!({ "twice": 4 }));

    // A body that is not a JSON object is `invalid` for that record alone
    // (an error of the SDK, not a trap).
    let r = run(&h, "not_objects").await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered), (0, 3));
    let dead = h
        .state
        .dead_letters(Some("acme"), Some("not_objects"))
        .unwrap();
    assert_eq!(dead.len(), 3);
    for d in &dead {
        assert_eq!(d.stage, "map");
        let text = d.error.to_string();
        assert!(text.contains("body is not a JSON object"), "{text}");
        assert!(!text.contains("trapped"), "{text}");
    }

    // describe's JSON Schema is checked before the run.
    let error = needs_attention(&h, "bad_config").await;
    assert!(error.contains("rename"), "{error}");
}

/// An uncaught JavaScript exception traps the component; the host splits
/// the batch over fresh instances, dead-letters the one record that throws
/// with the exception's message, and delivers the 99 others.
#[tokio::test(flavor = "multi_thread")]
async fn an_uncaught_js_exception_dead_letters_only_its_record() {
    let (sink, server, dir) = sink_and_dir().await;
    let flows = [acme_flow(
        "sync",
        "numbers",
        "{}",
        r#"{ connector = "throwing-mapper@0.1.0", config = {} }"#,
        &test_destination(&server.url("")),
    )];
    let h = host(&config_text(dir.path(), &flows), &["throwing-mapper"]).await;
    // 100 records in one run (one batch), through the test source's
    // webhook path, which takes their bodies as they are.
    let deliveries = (0..100)
        .map(|i| {
            let body = json!({ "id": format!("r{i}"), "version": 1, "n": i, "explode": i == 37 });
            (vec![], body.to_string().into_bytes())
        })
        .collect();
    let r = h
        .deliver_webhooks("acme", "sync", deliveries)
        .await
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        (r.fetched, r.emitted, r.dead_lettered),
        (100, 99, 1),
        "{r:?}"
    );
    let got = sink.records();
    assert_eq!(got.len(), 99);
    assert!(!got.contains_key("r37"));
    assert_eq!(got["r36"]["n"], 36, "passed through unchanged");
    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].record.key.as_str(), dead[0].stage.as_str()),
        ("r37", "map")
    );
    let text = dead[0].error.to_string();
    assert!(
        text.contains("trapped") && text.contains("record r37 asked to explode"),
        "the dead letter carries the exception's message: {text}"
    );
    // Issue 20, item 6: and its class.
    assert!(text.contains("TypeError"), "{text}");
}

/// The JavaScript SDK's HTTP client, kv and error mapping, through a test
/// destination written with it: concurrent `PUT`s, a `400` dead-lettered
/// (invalid), a `503` retried (transient) and then delivered, the kv count
/// carried between batches, a `401` and an origin the tenant did not grant
/// stopping the flow (config).
#[tokio::test(flavor = "multi_thread")]
async fn the_js_sdk_maps_http_answers_to_error_classes() {
    let records: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let counts: Arc<Mutex<Vec<String>>> = Arc::default();
    // n5 answers 503 six times: the host's own retries of an idempotent
    // request give up after six attempts, so the guest sees the last one.
    let busy = Arc::new(AtomicU32::new(0));
    let (r2, c2, busy2) = (records.clone(), counts.clone(), busy.clone());
    let server = TestServer::start(move |s, _| {
        let key = key_of(s);
        if let Some(c) = s.header("x-delivered-before") {
            c2.lock().unwrap().push(c);
        }
        match (s.method.as_str(), key.as_str()) {
            (_, "n3") => Reply::new(400, "n3 is not welcome"),
            (_, "n5") if busy2.fetch_add(1, Ordering::SeqCst) < 6 => {
                Reply::new(503, "busy").header("retry-after", "0")
            }
            (_, "n8") => Reply::new(401, "who are you"),
            ("PUT", _) => {
                let body: Value = serde_json::from_slice(&s.body).unwrap();
                r2.lock().unwrap().insert(key, body);
                Reply::new(201, "")
            }
            _ => Reply::new(405, ""),
        }
    })
    .await;
    let destination = |url: &str, allow: &str| {
        format!(
            r#"{{ connector = "http-destination@0.1.0", config = {{ url = "{url}" }}, http = {{ allow = ["{allow}"] }} }}"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let flows = [
        acme_flow(
            "delivers",
            "numbers",
            "{ total = 8, page_size = 4 }",
            "",
            &destination(&server.url("/a"), "http://127.0.0.1:*"),
        ),
        acme_flow(
            "unauthorized",
            "numbers",
            "{ total = 9, page_size = 9 }",
            "",
            &destination(&server.url("/b"), "http://127.0.0.1:*"),
        ),
        acme_flow(
            "not_granted",
            "numbers",
            "{ total = 2, page_size = 2 }",
            "",
            &destination(&server.url("/c"), "http://127.0.0.1:1"),
        ),
    ];
    let h = host(&config_text(dir.path(), &flows), &["http-destination"]).await;

    let r = run(&h, "delivers").await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered), (7, 1), "{r:?}");
    assert!(r.retries >= 1, "the 503 was retried as transient: {r:?}");
    assert!(busy.load(Ordering::SeqCst) > 6);
    let got = records.lock().unwrap().clone();
    assert_eq!(got.len(), 7);
    assert_eq!(got["n5"], json!({ "n": 5 }), "delivered after the 503");
    let dead = h
        .state
        .dead_letters(Some("acme"), Some("delivers"))
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].record.key.as_str(), dead[0].stage.as_str()),
        ("n3", "emit")
    );
    let text = dead[0].error.to_string();
    assert!(
        text.contains("delivering n3: HTTP 400: n3 is not welcome"),
        "{text}"
    );
    // The second page's batch saw what the first delivered (kv).
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.first().map(String::as_str), Some("0"), "{counts:?}");
    assert!(counts.contains(&"3".to_string()), "{counts:?}");

    // A 401 is a config error: the flow stops and needs attention.
    let error = needs_attention(&h, "unauthorized").await;
    assert!(
        error.contains("delivering n8: HTTP 401: who are you"),
        "{error}"
    );

    // An origin the tenant did not grant is refused by the host: config.
    let error = needs_attention(&h, "not_granted").await;
    assert!(error.contains("denied by the host"), "{error}");
}

/// Issue 20, item 3: a record's `version` arrives in JavaScript as a
/// `BigInt`; put into `http.sendAll`'s `json`, it made `JSON.stringify`
/// throw, and the SDK reported that as *transient*: retries, a failed run,
/// a cursor that never moved. What fails before a request leaves the guest
/// is the record's fault: `invalid`, dead-lettered with the exception's
/// class, and the run goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_js_sdk_cannot_build_is_invalid_not_transient() {
    let server = TestServer::start(|_, _| Reply::new(201, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let flows = [acme_flow(
        "bigint",
        "numbers",
        "{ total = 3, page_size = 3 }",
        "",
        &format!(
            r#"{{ connector = "http-destination@0.1.0", config = {{ url = "{}", with_version = true }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}"#,
            server.url("")
        ),
    )];
    let h = host(&config_text(dir.path(), &flows), &["http-destination"]).await;
    let r = run(&h, "bigint").await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered, r.retries), (0, 3, 0), "{r:?}");
    let dead = h.state.dead_letters(Some("acme"), Some("bigint")).unwrap();
    let why = dead[0].error.to_string();
    assert!(
        why.starts_with("invalid") && why.contains("TypeError"),
        "{why}"
    );
    assert!(server.seen().is_empty(), "nothing left the guest");
}
