//! Connectors written in Python (componentize-py) in real flows: a test
//! mapper that raises an uncaught exception on one record of a batch (the
//! record is dead-lettered with the Python traceback, the rest delivered),
//! and the `http-post-py` destination of `connectors/` against a local
//! server (what arrives, and how its answers become weft's error classes).
//! The components come from `make guests-python`
//! (`target/guests/python/<name>.wasm`).

use crate::common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use weft::Host;
use weft::config::WeftConfig;
use weft::state::RunOutcome;
use weft_test_artifacts as artifacts;

/// The Python component `name`, built by `make guests-python`.
fn python_component(name: &str) -> PathBuf {
    guest_component("python", name, "guests-python")
}

/// One tenant `acme` with one flow `sync` from the test source's `numbers`
/// (`source_cfg`) through `mappers` to `destination`, with a short retry
/// budget.
fn config_text(data_dir: &Path, source_cfg: &str, mappers: &str, destination: &str) -> String {
    let flow = acme_flow("sync", "numbers", source_cfg, mappers, destination);
    config_head(data_dir, 20000) + &flow + "\n" + SHORT_RETRY
}

/// A host with the test source and destination and the Python components
/// `python` registered, the way `weft connectors add` registers them. Its
/// compile cache is the tests' shared one: a Python component (CPython
/// inside) takes tens of seconds to compile, once.
async fn host(text: &str, python: &[&str]) -> Host {
    let config = WeftConfig::parse(text).unwrap();
    std::fs::create_dir_all(cache_dir()).unwrap();
    std::os::unix::fs::symlink(cache_dir(), config.data_dir.join("cache")).unwrap();
    let python: Vec<PathBuf> = python.iter().map(|n| python_component(n)).collect();
    let mut files: Vec<&Path> = vec![
        artifacts::TEST_SOURCE.as_ref(),
        artifacts::TEST_DESTINATION.as_ref(),
    ];
    files.extend(python.iter().map(PathBuf::as_path));
    host_with(text, &files).await
}

/// The test destination at `url`, with a rate of its own: at the default
/// 10/s, 99 requests take 8 s.
fn fast_destination(url: &str) -> String {
    format!(
        r#"{{ connector = "test-destination@^2", config = {{ url = "{url}" }}, http = {{ allow = ["http://127.0.0.1:*"], rate = {{ per_second = 1000.0, burst = 100 }} }} }}"#
    )
}

async fn run(h: &Host) -> weft::state::RunRecord {
    run_manual(h, "sync").await
}

/// A webhook delivery the test source turns into one record of kind
/// `thing` (its `on-webhook`): `event` `deleted` makes a delete.
async fn webhook(h: &Host, event: &str, body: Value) -> weft::state::RunRecord {
    h.deliver_webhook(
        "acme",
        "sync",
        vec![("x-event".into(), event.into())],
        body.to_string().into_bytes(),
    )
    .await
    .unwrap()
}

/// One record of 100 makes the Python mapper raise: that record alone is
/// dead-lettered, with the traceback (from `Traceback (most recent call
/// last):` to the exception) in its error; the other 99 are delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_exception_dead_letters_its_record_with_the_traceback() {
    let (sink, server, dir) = sink_and_dir().await;
    let destination = fast_destination(&server.url(""));
    let h = host(
        &config_text(
            dir.path(),
            "{ total = 100, page_size = 100 }",
            r#"{ connector = "test-raising-mapper@^1", config = { explode_keys = ["n42"] } }"#,
            &destination,
        ),
        &["raising-mapper"],
    )
    .await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        (r.fetched, r.mapped, r.emitted, r.dead_lettered),
        (100, 99, 99, 1)
    );
    let delivered = sink.records();
    assert_eq!(delivered.len(), 99);
    assert!(!delivered.contains_key("n42"));
    assert_eq!(delivered["n7"], json!({"n": 7, "mapped_by": "python"}));

    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(
        (
            d.record.key.as_str(),
            d.stage.as_str(),
            d.connector.as_str()
        ),
        ("n42", "map", "test-raising-mapper@1.0.0")
    );
    let text = d.error.to_string();
    for part in [
        "trapped",
        "Traceback (most recent call last):",
        "in explode",
        "ValueError: record n42 asked to explode",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(
        text.find("Traceback").unwrap() < text.find("ValueError").unwrap(),
        "{text}"
    );

    // A body with `"explode": true` (here from a webhook) raises too.
    let r = webhook(
        &h,
        "created",
        json!({"id": "t1", "version": 1, "explode": true}),
    )
    .await;
    assert_eq!((r.emitted, r.dead_lettered), (0, 1), "{:?}", r.error);
    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    let t1 = dead.iter().find(|d| d.record.key == "t1").unwrap();
    assert!(
        t1.error
            .to_string()
            .contains("ValueError: record t1 asked to explode"),
        "{}",
        t1.error
    );
}

/// `http-post-py` sends each record as JSON to its URL (`{kind}` and
/// `{key}` filled in), deletes as `DELETE`; a `400` dead-letters that record
/// with the answer, a `503` is transient: retried, then the run fails with
/// nothing dead-lettered. `method` and `envelope` change what is sent.
#[tokio::test(flavor = "multi_thread")]
async fn http_post_py_delivers_json_and_maps_answers_to_error_classes() {
    let down = Arc::new(AtomicBool::new(false));
    let d2 = down.clone();
    let server = TestServer::start(move |s, _| {
        if d2.load(Ordering::SeqCst) {
            return Reply::new(503, "down for maintenance").header("retry-after", "0");
        }
        match s.method.as_str() {
            "POST" | "PUT" if s.path.ends_with("/n3") => Reply::new(400, "n3 is not welcome"),
            "POST" | "PUT" => Reply::new(201, ""),
            "DELETE" => Reply::new(204, ""),
            _ => Reply::new(405, ""),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let destination = format!(
        r#"{{ connector = "http-post-py@^0.1", config = {{ url = "{}" }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}"#,
        server.url("/in/{kind}/{key}")
    );
    let h = host(
        &config_text(dir.path(), "{ total = 5, page_size = 5 }", "", &destination),
        &["http-post-py"],
    )
    .await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered), (4, 1));
    let seen = server.seen();
    let mut paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/in/number/n0",
            "/in/number/n1",
            "/in/number/n2",
            "/in/number/n3",
            "/in/number/n4"
        ]
    );
    let n2 = seen.iter().find(|s| s.path == "/in/number/n2").unwrap();
    assert_eq!(n2.method, "POST");
    assert_eq!(
        n2.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&n2.body).unwrap(),
        json!({"n": 2})
    );

    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].record.key.as_str(),
            dead[0].stage.as_str(),
            dead[0].connector.as_str()
        ),
        ("n3", "emit", "http-post-py@0.1.0")
    );
    let text = dead[0].error.to_string();
    assert!(
        text.starts_with("invalid:")
            && text.contains("POST http://127.0.0.1:")
            && text.contains("HTTP 400: n3 is not welcome"),
        "{text}"
    );

    // A record that was delivered, then deleted: a DELETE of its URL.
    let r = webhook(&h, "created", json!({"id": "t 1", "version": 1})).await;
    assert_eq!((r.outcome, r.emitted), (RunOutcome::Succeeded, 1));
    let r = webhook(&h, "deleted", json!({"id": "t 1", "version": 2})).await;
    assert_eq!((r.outcome, r.emitted), (RunOutcome::Succeeded, 1));
    let seen = server.seen();
    let last: Vec<(&str, &str)> = seen[seen.len() - 2..]
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        last,
        [("POST", "/in/thing/t%201"), ("DELETE", "/in/thing/t%201")],
        "the key is percent-encoded"
    );
    assert!(seen.last().unwrap().body.is_empty());

    // 503: transient, retried within the budget, then the run fails;
    // nothing is dead-lettered.
    down.store(true, Ordering::SeqCst);
    let before = server.seen().len();
    let r = webhook(&h, "created", json!({"id": "t2", "version": 1})).await;
    assert_eq!(r.outcome, RunOutcome::Failed);
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("still failing after the retry budget") && error.contains("HTTP 503"),
        "{error}"
    );
    assert!(r.retries >= 1, "retried: {}", r.retries);
    assert!(server.seen().len() > before + 1, "the host asked again");
    assert_eq!(h.state.dead_letters(Some("acme"), None).unwrap().len(), 1);
    down.store(false, Ordering::SeqCst);

    // `method = "PUT"` and `envelope = true`.
    let dir = tempfile::tempdir().unwrap();
    let destination = format!(
        r#"{{ connector = "http-post-py@^0.1", config = {{ url = "{}", method = "PUT", envelope = true }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}"#,
        server.url("/all")
    );
    let h = host(
        &config_text(dir.path(), "{ total = 1, page_size = 1 }", "", &destination),
        &["http-post-py"],
    )
    .await;
    let before = server.seen().len();
    let r = run(&h).await;
    assert_eq!((r.outcome, r.emitted), (RunOutcome::Succeeded, 1));
    let seen = server.seen();
    assert_eq!(seen.len(), before + 1);
    let put = seen.last().unwrap();
    assert_eq!((put.method.as_str(), put.path.as_str()), ("PUT", "/all"));
    assert_eq!(
        serde_json::from_slice::<Value>(&put.body).unwrap(),
        json!({"key": "n0", "kind": "number", "version": 0, "body": {"n": 0}})
    );
}

/// Issue 20, item 4: finding a bad record in a batch costs several trap
/// probes, and each printed the guest's full traceback and the runtime's
/// `panicked at …` lines at WARN: 82 lines for two bad records, without
/// `WEFT_LOG` set. Now the guest's stderr and the trap events are traced at
/// DEBUG, and each dead-lettered record is one WARN line.
#[tokio::test(flavor = "multi_thread")]
async fn two_poison_records_are_two_warning_lines() {
    let (_sink, server, dir) = sink_and_dir().await;
    let destination = fast_destination(&server.url(""));
    let text = config_text(
        dir.path(),
        "{ total = 40, page_size = 40 }",
        r#"{ connector = "test-raising-mapper@^1", config = { explode_keys = ["n7", "n23"] } }"#,
        &destination,
    );
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(cache_dir()).unwrap();
    std::os::unix::fs::symlink(cache_dir(), dir.path().join("cache")).unwrap();
    let mapper = python_component("raising-mapper");
    for f in [
        Path::new(artifacts::TEST_SOURCE),
        Path::new(artifacts::TEST_DESTINATION),
        mapper.as_path(),
    ] {
        assert_success(
            &weft_cli(&path)
                .args(["connectors", "add"])
                .arg(f)
                .output()
                .unwrap(),
        );
    }
    let out = weft_cli(&path)
        .env_remove("WEFT_LOG")
        .args(["run", "--tenant", "acme", "--flow", "sync"])
        .output()
        .unwrap();
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warnings.len(),
        2,
        "one line per dead-lettered record:\n{stderr}"
    );
    // Nothing else: no traceback of a probe, no runtime panic line.
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 dead-lettered"), "{stdout}");
}
