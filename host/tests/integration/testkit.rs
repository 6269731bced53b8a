//! The offline test kit: `weft run --record` writes case files with the
//! credentials scrubbed, `weft test` replays them with no network, the Acme
//! connectors pass the cassettes in `connectors/cassettes`, and a changed
//! output fails with a readable diff (`--update` accepts it).

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use weft_test_artifacts as artifacts;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `weft`, with a cache directory of the test's own.
fn weft(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.env("XDG_CACHE_HOME", home.join("cache"));
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn weft_test(home: &Path, wasm: &str, cases: &Path, update: bool) -> Output {
    let mut c = weft(home);
    c.arg("test").arg(wasm).arg(cases);
    if update {
        c.arg("--update");
    }
    c.output().unwrap()
}

#[test]
fn the_acme_connectors_pass_their_cassettes_offline() {
    let home = tempfile::tempdir().unwrap();
    let cassettes = repo().join("connectors/cassettes");
    for wasm in [
        artifacts::ACME_CRM,
        artifacts::ACME_CALENDAR,
        artifacts::ACME_TOUCHPOINTS,
        artifacts::CALDAV,
        artifacts::DASHBOARD,
    ] {
        // Nothing listens where the recording went, and the replay's
        // resolver knows no host: only the cassettes can answer.
        let out = weft_test(home.path(), wasm, &cassettes, false);
        let t = text(&out);
        assert!(out.status.success(), "{wasm}: {t}");
        assert!(t.contains(" passed, 0 differ"), "{t}");
        assert!(!t.contains("\n0 passed"), "{wasm} has cases: {t}");
    }
}

#[test]
fn a_changed_output_fails_with_a_readable_diff_and_update_accepts_it() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.json");
    let original = std::fs::read_to_string(
        repo().join("connectors/cassettes/northwind.appointments.acme-calendar.json"),
    )
    .unwrap();
    // The recording says the first event has another title: the connector
    // no longer does what was recorded.
    let mut case: Value = serde_json::from_str(&original).unwrap();
    let first = &mut case["calls"][0]["output"]["ok"][0]["Ok"][0];
    let body = first["body"].as_str().unwrap().to_owned();
    let changed = body.replacen("SUMMARY:", "SUMMARY:Not ", 1);
    assert_ne!(body, changed, "the first event has a SUMMARY: {body}");
    first["body"] = Value::String(changed);
    std::fs::write(&file, serde_json::to_string_pretty(&case).unwrap()).unwrap();

    let out = weft_test(home.path(), artifacts::ACME_CALENDAR, &file, false);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("call 1 (map of"), "{t}");
    assert!(t.contains("--- recorded") && t.contains("+++ now"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with('-') && l.contains("SUMMARY:Not ")),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with('+') && l.contains("SUMMARY:") && !l.contains("SUMMARY:Not ")),
        "{t}"
    );

    let out = weft_test(home.path(), artifacts::ACME_CALENDAR, &file, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 updated"), "{}", text(&out));
    // Issue 20, item 6: the summary counts what was updated, and the file is
    // written as `weft run --record` wrote it (same keys, same order): only
    // the changed output differs from the recording, here not at all.
    let last = text(&out).lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("1 updated") && last.contains("0 differ"),
        "{last}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let out = weft_test(home.path(), artifacts::ACME_CALENDAR, &file, false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("SUMMARY:Not ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_run_record_writes_case_files_without_secrets_that_replay() {
    const TOKEN: &str = "tok-7c1d2e9a4b";
    // An API that echoes the credential it was sent (some do, in errors).
    let api = TestServer::start(|s, _| {
        let auth = s
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Reply::ok(format!("{{\"you_sent\": \"{auth}\"}}"))
    })
    .await;
    let sink = TestServer::start(|_, _| Reply::new(201, "")).await;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secrets.toml"),
        format!("api_token = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "data"
secrets_file = "secrets.toml"
private_hosts = ["127.0.0.1"]

[tenants.acme.flows.sync]
source = {{ connector = "test-source@^1", stream = "http", config = {{ url = "{api}/items" }}, http = {{ allow = ["{api_o}"], credentials = [{{ origin = "{api_o}", auth = {{ type = "bearer", token = {{ secret = "api_token" }} }} }}] }} }}
destination = {{ connector = "test-destination@^2", config = {{ url = "{sink}" }}, http = {{ allow = ["{sink_o}"] }} }}
"#,
            api = api.origin(),
            api_o = api.origin(),
            sink = sink.url(""),
            sink_o = sink.origin(),
        ),
    )
    .unwrap();
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        let out = weft(home.path())
            .arg("-c")
            .arg(&config)
            .args(["connectors", "add", f])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    // `weft run --record` into `cases`, which succeeds: what it says.
    let record = |cases: &Path| {
        let out = weft(home.path())
            .arg("-c")
            .arg(&config)
            .args(["run", "--record"])
            .arg(cases)
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        t
    };
    let cases = dir.path().join("cases");
    let t = record(&cases);
    assert!(t.contains("recorded"), "{t}");
    // The API really got the token, and the guest saw it echoed...
    assert!(api.seen()[0].headers["authorization"] == format!("Bearer {TOKEN}"));
    let source_case = cases.join("acme.sync.test-source.json");
    let written = std::fs::read_to_string(&source_case).unwrap();
    // ...but no file of the recording holds it.
    for entry in std::fs::read_dir(&cases).unwrap() {
        let body = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!body.contains(TOKEN), "{body}");
    }
    assert!(written.contains("[scrubbed]"), "{written}");
    let case: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(case["calls"][0]["call"], "fetch");
    assert_eq!(case["calls"][0]["http"][0]["request"]["method"], "GET");
    assert!(
        case["calls"][0]["http"][0]["request"]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h[0] != "authorization"),
        "the request is recorded as the guest made it, before the host added the credential"
    );
    assert!(cases.join("acme.sync.test-destination.json").exists());
    // Issue 20, item 6: recorded again, the flow is up to date: only the
    // source's call is recorded, and weft says how to record every stage.
    let again = cases.with_file_name("again");
    let t = record(&again);
    assert!(!again.join("acme.sync.test-destination.json").exists());
    assert!(t.contains("nothing new") && t.contains("--backfill"), "{t}");

    // Offline, both connectors do again what they did.
    drop(api);
    drop(sink);
    for (wasm, _) in [
        (artifacts::TEST_SOURCE, "source"),
        (artifacts::TEST_DESTINATION, "destination"),
    ] {
        let out = weft_test(home.path(), wasm, &cases, false);
        assert!(out.status.success(), "{wasm}: {}", text(&out));
        assert!(text(&out).contains(" passed, 0 differ"), "{}", text(&out));
    }
}
