//! Flows end to end, with the test components and a local destination that
//! stores records idempotently: multi-page sync, newer-wins, dead letters and
//! replay after a connector fix, a destination that is down, config errors,
//! and a process killed between delivery and commit.

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use weft::Host;
use weft::config::WeftConfig;
use weft::flow::Trigger;
use weft::state::RunOutcome;
use weft_test_artifacts as artifacts;

fn config_text(
    data_dir: &Path,
    stream: &str,
    source_cfg: &str,
    mapper: &str,
    dest_url: &str,
    extra: &str,
) -> String {
    let destination = test_destination(dest_url);
    let flow = acme_flow("sync", stream, source_cfg, mapper, &destination);
    format!("{}{flow}{extra}\n", config_head(data_dir, 5000))
}

async fn host(text: &str) -> Host {
    host_with(
        text,
        &[
            artifacts::TEST_SOURCE.as_ref(),
            artifacts::TEST_MAPPER.as_ref(),
            artifacts::TEST_DESTINATION.as_ref(),
        ],
    )
    .await
}

const MAPPER: &str = r#"{ connector = "test-mapper@>=0.4", config = {} }"#;

/// What a test holds on to without using it: the destination's server and
/// the data directory.
type Keep = (TestServer, tempfile::TempDir);

/// A sink serving as the destination, a data directory and a host over
/// them, with the test source's `stream` and `source_cfg`, `mapper` and
/// `extra` configuration: what most tests here start from.
async fn setup(stream: &str, source_cfg: &str, mapper: &str, extra: &str) -> (Sink, Host, Keep) {
    let (sink, server, dir) = sink_and_dir().await;
    let text = config_text(
        dir.path(),
        stream,
        source_cfg,
        mapper,
        &server.url(""),
        extra,
    );
    (sink, host(&text).await, (server, dir))
}

async fn run(h: &Host) -> weft::state::RunRecord {
    run_manual(h, "sync").await
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_page_sync_delivers_everything_and_moves_the_cursor() {
    let (sink, h, _keep) = setup("numbers", "{ total = 10, page_size = 3 }", MAPPER, "").await;
    let pages = Arc::new(Mutex::new(Vec::new()));
    let p2 = pages.clone();
    let r = h
        .run_flow("acme", "sync", Trigger::Manual, &move |r| {
            p2.lock().unwrap().push(r.pages)
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        (r.pages, r.fetched, r.mapped, r.emitted, r.dead_lettered),
        (4, 10, 10, 10, 0)
    );
    assert_eq!(
        *pages.lock().unwrap(),
        vec![1, 2, 3, 4],
        "progress after every page"
    );
    assert_eq!(sink.keys().len(), 10);
    assert_eq!(
        sink.records.lock().unwrap()["n7"],
        json!({"n": 7, "doubled": 14})
    );
    assert_eq!(
        h.state.cursor("acme", "sync").unwrap().as_deref(),
        Some("10")
    );
    assert_eq!(
        r.connectors,
        vec![
            "test-source@1.2.3",
            "test-mapper@0.4.0",
            "test-destination@2.0.0"
        ]
    );

    // The next run starts from the cursor and finds nothing new.
    let again = run(&h).await;
    assert_eq!(
        (again.outcome, again.fetched, again.emitted),
        (RunOutcome::Succeeded, 0, 0)
    );
    let runs = h.state.runs(Some("acme"), Some("sync"), 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, again.id, "newest first");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_and_duplicate_records_are_skipped() {
    let (sink, h, _keep) = setup("dupes", "{}", MAPPER, "").await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    // a@1 within page 0 (older than a@2), and a@1 again on page 1.
    assert_eq!((r.fetched, r.skipped_stale, r.emitted), (5, 2, 3));
    let recs = sink.records.lock().unwrap().clone();
    assert_eq!(recs["a"]["n"], 2, "the newer revision of a wins");
    assert_eq!(recs["b"]["n"], 3);
    assert_eq!(sink.puts.lock().unwrap()["a"], 1);

    // Reading everything again (the cursor reset, versions kept) delivers nothing.
    h.state.set_cursor("acme", "sync", None).unwrap();
    let again = run(&h).await;
    assert_eq!(
        (again.fetched, again.skipped_stale, again.emitted),
        (5, 5, 0)
    );
    assert_eq!(sink.puts.lock().unwrap()["a"], 1);

    // A backfill forgets the versions and re-delivers.
    let back = h
        .run_flow("acme", "sync", Trigger::Backfill, &|_| {})
        .await
        .unwrap();
    assert_eq!(back.emitted, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_records_are_dead_lettered_and_replayed_after_a_fix() {
    let mapper = r#"{ connector = "test-mapper@>=0.4", config = { reject_multiple_of = 4 } }"#;
    let (sink, h, _keep) = setup("numbers", "{ total = 10, page_size = 5 }", mapper, "").await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered), (7, 3));
    assert_eq!(sink.keys().len(), 7);
    assert_eq!(
        h.state.cursor("acme", "sync").unwrap().as_deref(),
        Some("10"),
        "the cursor moves past dead letters"
    );
    let dead = h.state.dead_letters(Some("acme"), Some("sync")).unwrap();
    let keys: Vec<_> = dead.iter().map(|d| d.record.key.as_str()).collect();
    assert_eq!(keys, vec!["n0", "n4", "n8"]);
    let d = &dead[1];
    assert_eq!(
        (d.stage.as_str(), d.connector.as_str(), d.attempts),
        ("map", "test-mapper@0.4.0", 1)
    );
    assert!(d.error.to_string().contains("multiple of 4"), "{}", d.error);
    assert_eq!(d.record.body, r#"{"n":4}"#);

    // Replaying with the same (broken) mapper fails again and counts it.
    let still = h.replay(&d.id).await.unwrap().unwrap_err();
    assert_eq!(still.attempts, 2);

    // A fixed mapper version is registered; replay uses the current version.
    h.registry
        .add(&h.runtime, artifacts::TEST_MAPPER_V2.as_ref())
        .await
        .unwrap();
    for d in &dead {
        assert!(h.replay(&d.id).await.unwrap().is_ok());
    }
    assert!(h.state.dead_letters(None, None).unwrap().is_empty());
    assert_eq!(sink.keys().len(), 10);
    let scope = weft::flow::delivery_scope(&h.flow("acme", "sync").unwrap());
    assert_eq!(
        h.state
            .delivery("acme", &scope, "n4")
            .unwrap()
            .version("sync"),
        Some(4)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pinning_an_exact_version_rolls_back() {
    let pinned = r#"{ connector = "test-mapper@0.4.0", config = { reject_multiple_of = 4 } }"#;
    let (_sink, h, _keep) = setup("numbers", "{ total = 5, page_size = 5 }", pinned, "").await;
    h.registry
        .add(&h.runtime, artifacts::TEST_MAPPER_V2.as_ref())
        .await
        .unwrap();
    let r = run(&h).await;
    assert_eq!(r.connectors[1], "test-mapper@0.4.0");
    assert_eq!(r.dead_lettered, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_that_is_down_is_retried_without_moving_the_cursor() {
    let retry = "[tenants.acme.flows.sync.retry]\nmax_attempts = 3\nbase_delay_ms = 10\nmax_delay_ms = 50\n";
    let (sink, h, _keep) = setup("numbers", "{ total = 6, page_size = 3 }", MAPPER, retry).await;
    sink.down.store(true, Ordering::SeqCst);
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("still failing after the retry budget"),
        "{:?}",
        r.error
    );
    assert_eq!(r.retries, 6, "three records, two retries each");
    assert_eq!(
        h.state.cursor("acme", "sync").unwrap(),
        None,
        "the cursor did not move"
    );
    assert!(
        h.state.dead_letters(None, None).unwrap().is_empty(),
        "nothing is dead-lettered for an outage"
    );

    sink.down.store(false, Ordering::SeqCst);
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded);
    assert_eq!(sink.keys().len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_errors_stop_the_flow_and_name_the_problem() {
    let (sink, server, dir) = sink_and_dir().await;
    let url = server.url("");
    let host_for = async |stream: &str, source_cfg: &str, mapper: &str| {
        host(&config_text(
            dir.path(),
            stream,
            source_cfg,
            mapper,
            &url,
            "",
        ))
        .await
    };
    // The connector refuses its credentials: a config error.
    let h = host_for("config", "{}", MAPPER).await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::NeedsAttention);
    assert!(r.error.as_deref().unwrap().contains("api key rejected"));
    assert!(
        h.state
            .attention("acme", "sync")
            .unwrap()
            .unwrap()
            .contains("api key rejected")
    );

    // Config that does not match the connector's schema names the key.
    let h = host_for("numbers", "{ total = -1 }", MAPPER).await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::NeedsAttention);
    let e = r.error.unwrap();
    assert!(
        e.contains("tenants.acme.flows.sync.source.config") && e.contains("/total"),
        "{e}"
    );

    // A stream the source does not offer, and an unregistered connector.
    let h = host_for("numbers", "{}", r#"{ connector = "nope@^1" }"#).await;
    let e = run(&h).await.error.unwrap();
    assert!(
        e.contains("mappers[0]") && e.contains("no connector named \"nope\""),
        "{e}"
    );
    assert!(sink.keys().is_empty());
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/weft.toml");
    WeftConfig::load(&path).unwrap();
}

#[test]
fn cli_reports_config_errors_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    std::fs::write(
        &path,
        "[tenants.acme.flows.sync]\nsource = { connector = \"a@^1\", strem = \"x\" }\ndestination = { connector = \"b\" }\n",
    )
    .unwrap();
    let out = weft_cli(&path).arg("run").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("weft.toml") && err.contains("strem") && err.contains("line 2"),
        "{err}"
    );
}

/// The process is killed after the destination received a page but before
/// the page was committed. The next run delivers that page again: nothing is
/// lost and, the destination being idempotent, nothing is doubled.
#[tokio::test(flavor = "multi_thread")]
async fn crash_between_emit_and_commit_loses_and_doubles_nothing() {
    let sink = Sink::default();
    let child_pid: Arc<Mutex<Option<u32>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let server = {
        let (sink, pid, killed) = (sink.clone(), child_pid.clone(), killed.clone());
        TestServer::start(move |s, _| {
            let key = s.path.trim_start_matches("/records/").to_owned();
            *sink.puts.lock().unwrap().entry(key.clone()).or_default() += 1;
            sink.records
                .lock()
                .unwrap()
                .insert(key.clone(), serde_json::from_slice(&s.body).unwrap());
            // The last record of page 2 has arrived: kill the process before
            // it hears back, so it cannot commit the page.
            if key == "n5" && !killed.swap(true, Ordering::SeqCst) {
                let pid = pid.lock().unwrap().expect("child started");
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
            Reply::new(201, "")
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    std::fs::write(
        &path,
        config_text(
            &dir.path().join("data"),
            "numbers",
            "{ total = 9, page_size = 3 }",
            MAPPER,
            &server.url(""),
            "",
        ),
    )
    .unwrap();
    for f in [
        artifacts::TEST_SOURCE,
        artifacts::TEST_MAPPER,
        artifacts::TEST_DESTINATION,
    ] {
        let out = weft_cli(&path)
            .args(["connectors", "add", f])
            .output()
            .unwrap();
        assert_success(&out);
    }

    let child = weft_cli(&path).arg("run").spawn().unwrap();
    *child_pid.lock().unwrap() = Some(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success(), "the process was killed");
    assert!(killed.load(Ordering::SeqCst));

    let state = weft_cli(&path).args(["state", "show"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("cursor: 3"),
        "only page 1 was committed"
    );
    // The killed run does not stay "running" forever: the next start marks
    // it interrupted.
    let runs = weft_cli(&path).args(["runs", "list"]).output().unwrap();
    let runs = String::from_utf8_lossy(&runs.stdout);
    assert!(runs.contains("acme/sync: INTERRUPTED"), "{runs}");
    assert!(!runs.contains("running"), "{runs}");

    let out = weft_cli(&path).arg("run").output().unwrap();
    assert_success(&out);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("acme/sync: succeeded") && summary.contains("6 fetched"),
        "{summary}"
    );

    let puts = sink.puts.lock().unwrap().clone();
    assert_eq!(
        sink.keys(),
        (0..9).map(|i| format!("n{i}")).collect::<Vec<_>>(),
        "nothing lost"
    );
    for i in 0..3 {
        assert_eq!(
            puts[&format!("n{i}")],
            1,
            "committed page 1 is not sent again"
        );
    }
    for i in 3..6 {
        assert_eq!(
            puts[&format!("n{i}")],
            2,
            "the uncommitted page 2 comes again"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_flows_on_their_schedule_and_skips_those_needing_attention() {
    let (sink, h, _keep) = setup(
        "numbers",
        "{ total = 3, page_size = 3 }",
        MAPPER,
        "schedule = \"1s\"",
    )
    .await;
    let h = Arc::new(h);
    // Serve until three runs have been reported (or a generous timeout).
    let runs = Arc::new(Mutex::new(Vec::new()));
    let third = Arc::new(tokio::sync::Notify::new());
    let (r2, t2) = (runs.clone(), third.clone());
    let stop = async move {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), t2.notified()).await;
    };
    weft::service::scheduler::serve(&h, stop, &move |r| {
        let mut v = r2.lock().unwrap();
        v.push(r.clone());
        if v.len() == 3 {
            third.notify_one();
        }
    })
    .await
    .unwrap();
    let got = runs.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter()
            .all(|r| r.trigger == "schedule" && r.outcome == RunOutcome::Succeeded)
    );
    for pair in got.windows(2) {
        let gap = pair[1].started_ms - pair[0].started_ms;
        assert!(
            gap >= 990,
            "runs start one schedule apart, not sooner: {gap} ms"
        );
    }
    assert_eq!(sink.keys().len(), 3);

    h.state
        .set_attention("acme", "sync", Some("bad credentials"))
        .unwrap();
    let runs = Arc::new(Mutex::new(0));
    let r2 = runs.clone();
    weft::service::scheduler::serve(
        &h,
        tokio::time::sleep(std::time::Duration::from_millis(1200)),
        &move |_| *r2.lock().unwrap() += 1,
    )
    .await
    .unwrap();
    assert_eq!(
        *runs.lock().unwrap(),
        0,
        "a flow needing attention is not polled"
    );
}

/// `weft state show` tells how a flow is doing: the last outcome and how many
/// runs in a row did not succeed, not just "ok" because no config error
/// happened.
#[tokio::test(flavor = "multi_thread")]
async fn state_show_tells_failed_runs_in_a_row() {
    let (sink, h, _keep) = setup(
        "numbers",
        "{ total = 3, page_size = 3 }",
        MAPPER,
        SHORT_RETRY,
    )
    .await;
    let health = || weft::flow::flow_health(&*h.state, "acme", "sync").unwrap();
    assert!(health().contains("no run yet"), "{}", health());
    sink.down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(run(&h).await.outcome, RunOutcome::Failed);
    }
    let text = health();
    assert!(text.starts_with("FAILING"), "{text}");
    assert!(text.contains("last run FAILED"), "{text}");
    assert!(text.contains("2 run(s) in a row"), "{text}");
    assert!(
        text.contains("still failing after the retry budget"),
        "{text}"
    );
    sink.down.store(false, Ordering::SeqCst);
    assert_eq!(run(&h).await.outcome, RunOutcome::Succeeded);
    let text = health();
    assert!(
        text.starts_with("ok") && text.contains("last run succeeded"),
        "{text}"
    );
}

/// A record that leaves a mapper's filter is removed where it was delivered;
/// one that never got there costs no request; a mapper's retract removes and
/// dead-letters; a change of a stage's config re-reads everything.
#[tokio::test(flavor = "multi_thread")]
async fn records_leaving_a_filter_are_removed_and_retracts_dead_letter() {
    let (sink, mut h, _keep) = setup("numbers", "{ total = 6, page_size = 6 }", MAPPER, "").await;
    let mapper_config = |h: &mut Host, c: Value| {
        let mut t = h.tenant("acme").unwrap();
        t.flows.get_mut("sync").unwrap().mappers[0].config = c;
        h.put_tenant("acme", t).unwrap();
    };
    assert_eq!(run(&h).await.outcome, RunOutcome::Succeeded);
    assert_eq!(sink.keys().len(), 6);

    // The tenant now filters odd numbers out: the config change makes the
    // next run read everything again, and the odd ones leave.
    mapper_config(&mut h, json!({ "filter_odd": true }));
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(sink.keys(), vec!["n0", "n2", "n4"]);

    // Retract: removed where it was, and dead-lettered by the mapper.
    mapper_config(
        &mut h,
        json!({ "filter_odd": true, "retract_multiple_of": 4 }),
    );
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!(sink.keys(), vec!["n2"]);
    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    let keys: Vec<&str> = dead.iter().map(|d| d.record.key.as_str()).collect();
    assert_eq!(keys, vec!["n0", "n4"]);
    assert!(
        dead.iter()
            .all(|d| d.stage == "map" && d.connector.starts_with("test-mapper"))
    );
    assert!(
        dead[0]
            .error
            .to_string()
            .contains("cannot go there any more")
    );

    // A fresh flow with the filter from the start sends no delete at all for
    // records that never reached the destination.
    let (sink2, h2, _keep2) = setup(
        "numbers",
        "{ total = 6, page_size = 6 }",
        r#"{ connector = "test-mapper@>=0.4", config = { filter_odd = true } }"#,
        "",
    )
    .await;
    assert_eq!(run(&h2).await.outcome, RunOutcome::Succeeded);
    assert_eq!(sink2.keys(), vec!["n0", "n2", "n4"]);
    assert!(
        sink2.deletes.lock().unwrap().is_empty(),
        "no delete of what never got there"
    );
}

/// A record that makes a stage trap does not fail its batch: the host
/// splits the batch over fresh instances until it has the record(s) that
/// trap, dead-letters those with the trap and the guest's panic message,
/// and delivers the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_makes_a_stage_trap_is_dead_lettered_and_the_rest_delivered() {
    // The mapper panics on n = 0 and n = 14 of 20.
    let (sink, h, _keep) = setup(
        "numbers",
        "{ total = 20, page_size = 20 }",
        r#"{ connector = "test-mapper@0.4.0", config = { panic_multiple_of = 14 } }"#,
        "",
    )
    .await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered), (18, 2));
    assert_eq!(sink.keys().len(), 18);
    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    let keys: Vec<&str> = dead.iter().map(|d| d.record.key.as_str()).collect();
    assert_eq!(keys, ["n0", "n14"]);
    for d in &dead {
        assert_eq!(d.stage, "map");
        let text = d.error.to_string();
        assert!(
            text.contains("trapped") && text.contains("is a multiple of 14"),
            "{text}"
        );
    }

    // The destination traps on a batch that holds n7.
    let (sink, server, dir) = sink_and_dir().await;
    let text = config_text(
        dir.path(),
        "numbers",
        "{ total = 20, page_size = 20 }",
        "",
        &server.url(""),
        "",
    )
    .replace(
        "config = { url = ",
        "config = { panic_on_key = \"n7\", url = ",
    );
    let h = host(&text).await;
    let r = run(&h).await;
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{:?}", r.error);
    assert_eq!((r.emitted, r.dead_lettered), (19, 1));
    assert!(!sink.keys().contains(&"n7".to_string()));
    let dead = h.state.dead_letters(Some("acme"), None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].record.key.as_str(), dead[0].stage.as_str()),
        ("n7", "emit")
    );
    assert!(
        dead[0].error.to_string().contains("asked to panic"),
        "{}",
        dead[0].error
    );
}

/// Issue 19, item 1: the webhook processor delivered without asking the
/// scheduler, so a webhook batch ran beside a scheduled or manual run of
/// the same flow (45 overlapping pairs were counted) and an older version
/// could land last. Every trigger now takes the flow's lease: under a storm
/// of scheduled runs, manual runs, backfills and webhook batches, the run
/// records of the flow never overlap.
#[tokio::test(flavor = "multi_thread")]
async fn no_two_runs_of_a_flow_overlap_whatever_triggers_them() {
    let (_sink, server, dir) = sink_and_dir().await;
    let text = config_text(
        dir.path(),
        "numbers",
        "{ total = 100, page_size = 20 }",
        MAPPER,
        &server.url(""),
        "",
    )
    .replace(
        "[tenants.acme.flows.sync]\n",
        "[tenants.acme.flows.sync]\nschedule = \"1s\"\n",
    );
    let h = Arc::new(host(&text).await);
    let (tx, stop_tx, scheduler) = scheduler_task(&h, |_| {});
    let hooks = {
        let h = h.clone();
        tokio::spawn(async move {
            for n in 0..40 {
                let body = json!({ "id": format!("w{n}"), "version": n }).to_string();
                h.deliver_webhook("acme", "sync", vec![], body.into_bytes())
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            }
        })
    };
    for n in 0..8 {
        tx.send(weft::service::scheduler::RunRequest {
            tenant: "acme".into(),
            flow: "sync".into(),
            backfill: n % 2 == 1,
        })
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    hooks.await.unwrap();
    // Scheduled runs merge into the manual ones asked for meanwhile: wait
    // for one of their own.
    let t = std::time::Instant::now();
    while !h
        .state
        .runs(Some("acme"), Some("sync"), 10_000)
        .unwrap()
        .iter()
        .any(|r| r.trigger == "schedule")
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "no scheduled run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    scheduler.await.unwrap().unwrap();
    let mut runs = h.state.runs(Some("acme"), Some("sync"), 10_000).unwrap();
    runs.sort_by_key(|r| r.started_ms);
    let triggers: std::collections::BTreeSet<&str> =
        runs.iter().map(|r| r.trigger.as_str()).collect();
    for t in ["schedule", "manual", "backfill", "webhook"] {
        assert!(triggers.contains(t), "no {t} run: {triggers:?}");
    }
    let overlaps: Vec<String> = runs
        .windows(2)
        .filter(|w| w[1].started_ms < w[0].ended_ms.unwrap_or(u64::MAX))
        .map(|w| {
            format!(
                "{} {} / {} {}",
                w[0].trigger, w[0].id, w[1].trigger, w[1].id
            )
        })
        .collect();
    assert!(
        overlaps.is_empty(),
        "{} of {} runs overlap the one before: {:?}",
        overlaps.len(),
        runs.len(),
        &overlaps[..overlaps.len().min(5)]
    );
}

/// Issue 19, item 2: a record was skipped as stale only when the same flow
/// had delivered a newer version, so an older version carried by another
/// flow to the same destination (Acme's `contacts` and `appointments` flows
/// into one CalDAV event) overwrote the newer one for good. Now a record
/// must be newer than the newest version any flow delivered there.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_version_from_another_flow_never_overwrites_a_newer_one() {
    let (sink, server, dir) = sink_and_dir().await;
    // Two flows into the same destination connector.
    let destination = test_destination(&server.url(""));
    let flow = |name: &str| {
        acme_flow(
            name,
            "numbers",
            "{ total = 0, page_size = 1 }",
            "",
            &destination,
        )
    };
    let text = config_head(dir.path(), 5000) + &flow("sync") + &flow("other");
    let h = host(&text).await;
    let deliver = |flow: &'static str, version: i64, name: &'static str| {
        let h = &h;
        async move {
            let body = json!({ "id": "k1", "version": version, "name": name }).to_string();
            h.deliver_webhook("acme", flow, vec![], body.into_bytes())
                .await
                .unwrap()
        }
    };
    let newest = deliver("sync", 3, "newest").await;
    assert_eq!(newest.emitted, 1, "{newest:?}");
    // Late and out of order, through the other flow.
    let older = deliver("other", 2, "older").await;
    assert_eq!((older.emitted, older.skipped_stale), (0, 1), "{older:?}");
    let records = sink.records();
    assert_eq!(records.len(), 1);
    let at_destination = records.values().next().unwrap().to_string();
    assert!(at_destination.contains("newest"), "{at_destination}");
    // Newer through the other flow: delivered.
    let newer = deliver("other", 4, "newer still").await;
    assert_eq!(newer.emitted, 1, "{newer:?}");
    assert!(
        sink.records()
            .values()
            .next()
            .unwrap()
            .to_string()
            .contains("newer still")
    );
}

/// Issue 19, item 3: a signed but malformed delivery made `on-webhook`
/// answer `invalid`, the whole batch failed, was retried five times and
/// dropped: a good delivery behind it was never delivered and no dead
/// letter was kept. Now each delivery fails alone: the refused one becomes
/// a dead letter of its own (its body and headers, the source's reason,
/// replayable) and the rest of the batch is delivered at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_delivery_is_dead_lettered_alone_and_its_batch_goes_on() {
    let (sink, h, _keep) = setup("numbers", "{ total = 0, page_size = 1 }", "", "").await;
    let delivery = |id: &str, body: Value| {
        (
            vec![
                ("webhook-id".to_owned(), id.to_owned()),
                ("cookie".to_owned(), "not kept".to_owned()),
            ],
            body.to_string().into_bytes(),
        )
    };
    let run = h
        .deliver_webhooks(
            "acme",
            "sync",
            vec![
                delivery("evt_1", json!({ "id": "w1", "version": 1 })),
                delivery("evt_bad", json!({ "id": 42, "version": 1 })),
                delivery("evt_2", json!({ "id": "w2", "version": 1 })),
            ],
        )
        .await
        .unwrap();
    assert_eq!(run.outcome, RunOutcome::Succeeded, "{run:?}");
    assert_eq!((run.emitted, run.dead_lettered), (2, 1), "{run:?}");
    let keys: Vec<String> = sink.records().into_keys().collect();
    assert_eq!(keys, ["w1", "w2"]);
    let dead = h.state.dead_letters(Some("acme"), Some("sync")).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(
        (d.stage.as_str(), d.record.key.as_str()),
        ("on-webhook", "evt_bad")
    );
    assert!(d.error.to_string().contains("id"), "{}", d.error);
    let kept: Value = serde_json::from_str(&d.record.body).unwrap();
    assert_eq!(kept["headers"]["webhook-id"], "evt_bad");
    assert!(kept["headers"].get("cookie").is_none(), "{kept}");
    assert_eq!(
        serde_json::from_str::<Value>(kept["body"].as_str().unwrap()).unwrap()["id"],
        42
    );
    // Replayable: still refused, so it stays (with the source's reason).
    let again = h.replay(&d.id).await.unwrap();
    let again = again.unwrap_err();
    assert_eq!(again.id, d.id);
    assert_eq!(h.state.dead_letters(Some("acme"), None).unwrap().len(), 1);
}

/// `weft state copy --to URL`: a sled state with a sync behind it moves
/// into PostgreSQL, checked fact by fact; the same flow configured on the
/// copy (in a new data directory: the components come from the database)
/// goes on where it was, delivering nothing again; a second copy into the
/// same database is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_sled_state_moves_to_postgres_and_goes_on_where_it_was() {
    let (sink, server, dir) = sink_and_dir().await;
    let config = |data: &str, extra: &str| {
        config_text(
            &dir.path().join(data),
            "numbers",
            "{ total = 9, page_size = 3 }",
            MAPPER,
            &server.url(""),
            extra,
        )
    };
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, config("data", "")).unwrap();
    for f in [
        artifacts::TEST_SOURCE,
        artifacts::TEST_MAPPER,
        artifacts::TEST_DESTINATION,
    ] {
        assert_success(
            &weft_cli(&path)
                .args(["connectors", "add", f])
                .output()
                .unwrap(),
        );
    }
    assert_success(&weft_cli(&path).arg("run").output().unwrap());
    assert_eq!(sink.keys().len(), 9);
    let puts: u32 = sink.puts.lock().unwrap().values().sum();

    let pg = weft_test_pg::Postgres::start().unwrap();
    let url = pg.create_database("weft").unwrap();
    let out = weft_cli(&path)
        .args(["state", "copy", "--to", &url])
        .output()
        .unwrap();
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("copied and compared"), "{text}");
    assert!(text.contains("delivery\t9\t→ 9"), "{text}");
    assert!(text.contains("connector\t3\t→ 3"), "{text}");

    let on_pg = dir.path().join("pg.toml");
    std::fs::write(
        &on_pg,
        config(
            "data-pg",
            &format!("[state]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
        ),
    )
    .unwrap();
    let out = weft_cli(&on_pg).arg("run").output().unwrap();
    assert_success(&out);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("acme/sync: succeeded"), "{summary}");
    assert_eq!(
        sink.puts.lock().unwrap().values().sum::<u32>(),
        puts,
        "nothing delivered again: {summary}"
    );

    let again = weft_cli(&path)
        .args(["state", "copy", "--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("holds a state already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_wait_for_a_free_instance_slot_instead_of_failing() {
    // A slow source, so that the runs overlap; a pool of two instances, so
    // that one run (a source and a destination) fills it.
    let slow =
        TestServer::start(|_, _| Reply::ok("{}").after(std::time::Duration::from_millis(300)))
            .await;
    let (_sink, server, dir) = sink_and_dir().await;
    let mut text = format!(
        "data_dir = {:?}\nprivate_hosts = [\"127.0.0.1\"]\n[limits]\ncall_timeout_ms = 5000\nmax_instances = 2\n",
        dir.path()
    );
    for i in 0..3 {
        text.push_str(&format!(
            r#"
[tenants.acme.flows.f{i}]
source = {{ connector = "test-source@^1", stream = "http", config = {{ url = "{}" }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}
destination = {{ connector = "test-destination@^2", config = {{ url = "{}" }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}
"#,
            slow.url(&format!("/{i}")),
            // Three places, so that the runs need not take turns.
            server.url(&format!("/to{i}"))
        ));
    }
    let h = host(&text).await;
    let (a, b, c) = tokio::join!(
        run_manual(&h, "f0"),
        run_manual(&h, "f1"),
        run_manual(&h, "f2")
    );
    for r in [a, b, c] {
        assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
        assert_eq!(r.emitted, 1, "{r:?}");
    }
    // A flow that needs more instances than the pool has says so.
    let one = format!(
        "data_dir = {:?}\n[limits]\nmax_instances = 1\n[tenants.acme.flows.sync]\nsource = {{ connector = \"test-source@^1\", stream = \"numbers\", config = {{ total = 1 }} }}\ndestination = {{ connector = \"test-destination@^2\", config = {{ url = \"discard:\" }} }}\n",
        dir.path().join("one")
    );
    let r = run_manual(&host(&one).await, "sync").await;
    assert_eq!(r.outcome, RunOutcome::NeedsAttention, "{r:?}");
    let e = r.error.unwrap_or_default();
    assert!(
        e.contains("needs 2 connector instances") && e.contains("limits.max_instances is 1"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_fills_the_pool_can_still_load_its_connectors() {
    // A process that has not loaded the connectors yet: loading one
    // instantiates it for its `describe`, which needs a slot of the pool
    // while the run's own fill it (two instances, a pool of two).
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\n[limits]\nmax_instances = 2\n[tenants.acme.flows.sync]\nsource = {{ connector = \"test-source@^1\", stream = \"numbers\", config = {{ total = 3 }} }}\ndestination = {{ connector = \"test-destination@^2\", config = {{ url = \"discard:\" }} }}\n",
        dir.path()
    );
    {
        let h = Host::open(WeftConfig::parse(&text).unwrap()).unwrap();
        for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
            h.registry.add(&h.runtime, f.as_ref()).await.unwrap();
        }
    }
    let h = Host::open(WeftConfig::parse(&text).unwrap()).unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), run_manual(&h, "sync"))
        .await
        .expect("the run waited on itself for a slot");
    assert_eq!(r.outcome, RunOutcome::Succeeded, "{r:?}");
    assert_eq!(r.emitted, 3, "{r:?}");
}

/// Before: the scheduler drove every run it started from its own task, so
/// a run waiting in a blocking state call (every PostgreSQL call blocks its
/// thread) held up all the others: 1,000 first syncs on PostgreSQL took as
/// long one at a time as 64 at once (the tenants bench), and the runs of a
/// scheduler shared one core. Each run is a task of its own now: while one
/// tenant's page commit waits on a row lock, another tenant's run goes on
/// to its end.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_waiting_on_the_state_does_not_hold_up_other_runs() {
    let pg = weft_test_pg::Postgres::start().unwrap();
    let url = pg.create_database("weft").unwrap();
    let (sink, fast, dir) = sink_and_dir().await;
    // `free` delivers to a slow destination: it cannot be done before
    // `stuck` has reached its commit.
    let slow =
        TestServer::start(|_, _| Reply::ok("{}").after(std::time::Duration::from_secs(1))).await;
    let mut text = format!(
        "data_dir = {:?}\nprivate_hosts = [\"127.0.0.1\"]\n",
        dir.path()
    );
    for (tenant, to) in [("stuck", &fast), ("free", &slow)] {
        text.push_str(&format!(
            "[tenants.{tenant}.flows.sync]\nschedule = \"1h\"\nsource = {{ connector = \"test-source@^1\", stream = \"numbers\", config = {{ total = 3, page_size = 3 }} }}\ndestination = {}\n",
            test_destination(&to.url(&format!("/{tenant}")))
        ));
    }
    let h = Arc::new(
        Host::open_with(
            WeftConfig::parse(&text).unwrap(),
            Arc::new(weft::state::PgState::open(&url).unwrap()),
            Arc::new(test_resolver()),
            weft::secrets::SecretStore::default(),
        )
        .unwrap(),
    );
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        h.registry.add(&h.runtime, f.as_ref()).await.unwrap();
    }
    // `stuck`'s page commit first bumps its scope's stamp: that row is
    // being inserted by a transaction that stays open.
    let (lock, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    lock.batch_execute(
        "BEGIN; INSERT INTO scope_stamps (tenant, scope, stamp) VALUES ('stuck', 'test-destination', 0)",
    )
    .await
    .unwrap();

    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let (requests, stop, scheduler) = scheduler_task(&h, move |r| {
        let _ = ended_tx.send(r.clone());
    });
    for tenant in ["stuck", "free"] {
        requests
            .send(weft::service::scheduler::RunRequest {
                tenant: tenant.into(),
                flow: "sync".into(),
                backfill: false,
            })
            .await
            .unwrap();
    }
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), ended.recv())
        .await
        .expect("no run ended while one waited on a row lock")
        .unwrap();
    assert_eq!(
        (first.tenant.as_str(), first.outcome),
        ("free", RunOutcome::Succeeded),
        "{first:?}"
    );
    // The lock goes: the waiting run commits and ends too.
    lock.batch_execute("ROLLBACK").await.unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(20), ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.tenant.as_str(), second.outcome),
        ("stuck", RunOutcome::Succeeded),
        "{second:?}"
    );
    stop.send(()).unwrap();
    scheduler.await.unwrap().unwrap();
    assert_eq!(sink.keys().len(), 3, "stuck's records arrived");
    drop(pg);
}

/// The scheduler over `h` in a task of its own: the run requests it takes,
/// what stops it, and its task; `report` gets every run that ends.
fn scheduler_task(
    h: &Arc<Host>,
    report: impl Fn(&weft::state::RunRecord) + Send + Sync + 'static,
) -> (
    tokio::sync::mpsc::Sender<weft::service::scheduler::RunRequest>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (requests, rx) = tokio::sync::mpsc::channel(64);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let h = h.clone();
    let task = tokio::spawn(async move {
        weft::service::scheduler::serve_with(
            &h,
            async move {
                let _ = stopped.await;
            },
            &report,
            rx,
        )
        .await
    });
    (requests, stop, task)
}

/// Before: whether a record "never got there" was read from its committed
/// entry only, so a run stopped between sending an upsert and committing it
/// (a `kill -9`) left the record looking absent there, and a later delete of
/// it was skipped: the destination kept it (the chaos test, seed
/// 12257489384250054299: an event left for a deleted appointment). What may
/// reach the destination for the first time is now noted before it leaves.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_sent_by_a_run_stopped_before_its_commit_is_deleted_later() {
    // The first PUT is answered late: the run is stopped meanwhile, after
    // the record reached the destination and before the commit.
    let server = TestServer::start(|seen, n| {
        if n == 0 && seen.method == "PUT" {
            Reply::ok("{}").after(std::time::Duration::from_secs(30))
        } else {
            Reply::ok("{}")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\nprivate_hosts = [\"127.0.0.1\"]\n[tenants.acme.flows.sync]\nsource = {{ connector = \"test-source@^1\", stream = \"numbers\" }}\ndestination = {}\n",
        dir.path(),
        test_destination(&server.url(""))
    );
    let h = Arc::new(host(&text).await);
    let hook = |event: &str| {
        let h = h.clone();
        let headers = vec![("x-event".to_owned(), event.to_owned())];
        async move {
            h.deliver_webhook(
                "acme",
                "sync",
                headers,
                br#"{"id":"k1","version":1}"#.to_vec(),
            )
            .await
        }
    };
    let stopped = tokio::spawn(hook("created"));
    let t = std::time::Instant::now();
    while server.seen().is_empty() {
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "no PUT");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stopped.abort();
    let _ = stopped.await;
    // Its deletion arrives (a newer version).
    let deleted = {
        let h = h.clone();
        h.deliver_webhook(
            "acme",
            "sync",
            vec![("x-event".to_owned(), "deleted".to_owned())],
            br#"{"id":"k1","version":2}"#.to_vec(),
        )
        .await
        .unwrap()
    };
    assert_eq!(deleted.outcome, RunOutcome::Succeeded, "{deleted:?}");
    assert_eq!(deleted.skipped_absent, 0, "{deleted:?}");
    let methods: Vec<String> = server
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(methods, ["PUT /records/k1", "DELETE /records/k1"]);
}
