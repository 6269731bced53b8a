//! The runtime against real test components: loading and identifying them,
//! each world's happy path, each error class, each sandbox limit, kv, logs,
//! the restricted WASI, the compile cache and `weft connectors inspect`.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use weft::events::EventKind;
use weft::{CallError, ConnectorError, Limits, Operation, Record, TenantGrant, WorldKind};
use weft_test_artifacts as artifacts;

fn grant(tenant: &str, config: Value) -> TenantGrant {
    TenantGrant {
        config,
        ..TenantGrant::new(tenant)
    }
}

fn body(r: &Record) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_test_component_has_a_test_and_loads_or_is_rejected_clearly() {
    let rt = runtime();
    for (name, path) in artifacts::ALL {
        let result = rt.load_file(path.as_ref()).await;
        match *name {
            "TEST_SOURCE" => assert_eq!(result.unwrap().world(), WorldKind::Source),
            "TEST_MAPPER" => assert_eq!(result.unwrap().world(), WorldKind::Mapper),
            "TEST_MAPPER_V2" => assert_eq!(result.unwrap().label(), "test-mapper@0.5.0"),
            "ACME_CRM" => assert_eq!(result.unwrap().world(), WorldKind::Source),
            "ACME_CALENDAR" | "ACME_TOUCHPOINTS" => {
                assert_eq!(result.unwrap().world(), WorldKind::Mapper)
            }
            // The console's browser test uploads it as a fixed release.
            "ACME_CALENDAR_FIXED" => assert_eq!(result.unwrap().label(), "acme-calendar@1.0.1"),
            "CALDAV" | "DASHBOARD" => assert_eq!(result.unwrap().world(), WorldKind::Destination),
            "TEST_DESTINATION" => assert_eq!(result.unwrap().world(), WorldKind::Destination),
            "TEST_WRONG_WORLD" => {
                let e = format!("{:#}", result.err().unwrap());
                assert!(
                    e.contains("wrong world") && e.contains("wasi:cli/run"),
                    "{e}"
                );
            }
            "TEST_FUTURE_VERSION" => {
                let e = format!("{:#}", result.err().unwrap());
                assert!(
                    e.contains("incompatible WIT version") && e.contains("weft:connector@9.0.0"),
                    "{e}"
                );
            }
            // The hostile components: host/tests/integration/hostile.rs tests each break.
            "TEST_HOSTILE" => assert_eq!(result.unwrap().world(), WorldKind::Source),
            "TEST_HOSTILE_START" => {
                let e = format!("{:#}", result.err().unwrap());
                assert!(e.contains("deadline"), "{e}");
            }
            "TEST_HOSTILE_DESCRIBE" => {
                let e = format!("{:#}", result.err().unwrap());
                assert!(e.contains("limits.max_label_bytes"), "{e}");
            }
            other => panic!("test component {other} has no test here"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_is_read_at_load() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    assert_eq!(c.label(), "test-source@1.2.3");
    assert_eq!(c.contract(), "0.1.0");
    assert_eq!(c.info().streams[0].name, "numbers");
    assert_eq!(c.info().config_schema["type"], "object");
    assert_eq!(c.digest().len(), 64);
    let mut i = rt.instantiate(&c, &TenantGrant::new("t")).await.unwrap();
    assert_eq!(i.describe().await.unwrap(), *c.info());
}

#[tokio::test(flavor = "multi_thread")]
async fn source_pages_through_a_stream() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let mut i = rt
        .instantiate(&c, &grant("t", json!({"total": 10, "page_size": 4})))
        .await
        .unwrap();
    let mut cursor = None;
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let page = i.fetch("numbers", cursor.as_deref()).await.unwrap();
        pages += 1;
        keys.extend(page.records.iter().map(|r| r.key.clone()));
        cursor = page.next_cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(keys, (0..10).map(|i| format!("n{i}")).collect::<Vec<_>>());
    assert_eq!(cursor.as_deref(), Some("10"));
}

#[tokio::test(flavor = "multi_thread")]
async fn error_classes_reach_the_host_and_leave_the_instance_usable() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let mut i = rt.instantiate(&c, &TenantGrant::new("t")).await.unwrap();
    assert_eq!(
        i.fetch("transient", None).await.unwrap_err(),
        CallError::Connector(ConnectorError::Transient {
            message: "upstream busy".into(),
            retry_after: Some(Duration::from_millis(1500)),
        })
    );
    assert!(matches!(
        i.fetch("invalid", None).await.unwrap_err(),
        CallError::Connector(ConnectorError::Invalid(_))
    ));
    assert_eq!(
        i.fetch("config", None).await.unwrap_err(),
        CallError::Connector(ConnectorError::Config("api key rejected".into()))
    );
    // Still usable.
    assert_eq!(i.fetch("numbers", None).await.unwrap().records.len(), 3);
    // A call from another world is refused without harm.
    let e = i.map(&[]).await.unwrap_err();
    assert!(matches!(e, CallError::WrongWorld { .. }), "{e}");
    assert!(i.fetch("numbers", None).await.is_ok());
}

fn numbers(n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: format!("n{i}"),
            kind: "number".into(),
            version: i,
            op: Operation::Upsert,
            body: json!({"n": i}).to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mapper_gives_one_outcome_per_record() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_MAPPER.as_ref()).await.unwrap();
    let mut i = rt
        .instantiate(&c, &grant("t", json!({"reject_multiple_of": 3})))
        .await
        .unwrap();
    let mut input = numbers(5);
    input.push(Record {
        key: "broken".into(),
        body: "{not json".into(),
        ..input[0].clone()
    });
    let out = i.map(&input).await.unwrap();
    assert_eq!(out.len(), 6);
    assert!(matches!(&out[0], Err(ConnectorError::Invalid(m)) if m.contains("multiple of 3")));
    let one = out[1].as_ref().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].kind, "mapped");
    assert_eq!(body(&one[0])["doubled"], 2);
    assert!(matches!(&out[3], Err(ConnectorError::Invalid(_))));
    assert!(out[4].is_ok());
    assert!(matches!(&out[5], Err(ConnectorError::Invalid(m)) if m.contains("not JSON")));

    let mut fan = rt
        .instantiate(&c, &grant("t", json!({"fanout": 3})))
        .await
        .unwrap();
    let out = fan.map(&numbers(2)).await.unwrap();
    assert_eq!(out[1].as_ref().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_that_breaks_the_outcome_contract_is_stopped() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_MAPPER.as_ref()).await.unwrap();
    let mut i = rt
        .instantiate(&c, &grant("t", json!({"wrong_count": true})))
        .await
        .unwrap();
    let e = i.map(&numbers(3)).await.unwrap_err();
    assert!(
        matches!(&e, CallError::BadOutput { detail, .. } if detail.contains("2 outcomes for 3")),
        "{e}"
    );
    assert!(matches!(
        i.map(&numbers(1)).await.unwrap_err(),
        CallError::Poisoned(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_delivers_over_http_with_per_record_outcomes() {
    let server = TestServer::start(|s, _| match (s.method.as_str(), s.path.as_str()) {
        ("PUT", "/records/n2") => Reply::new(422, r#"{"error":"n2 is not welcome"}"#),
        ("PUT", _) => Reply::new(201, ""),
        ("DELETE", "/records/gone") => Reply::new(404, ""),
        ("DELETE", _) => Reply::new(204, ""),
        _ => Reply::new(500, ""),
    })
    .await;
    let rt = runtime();
    let c = rt
        .load_file(artifacts::TEST_DESTINATION.as_ref())
        .await
        .unwrap();
    let mut g = grant("t", json!({"url": server.url("")}));
    g.http.allow = vec![weft::OriginPattern::parse(&server.origin()).unwrap()];
    let mut i = rt.instantiate(&c, &g).await.unwrap();
    let mut input = numbers(3);
    input.push(Record {
        key: "gone".into(),
        op: Operation::Delete,
        ..input[0].clone()
    });
    input.push(Record {
        key: "n1".into(),
        op: Operation::Delete,
        ..input[0].clone()
    });
    input.push(Record {
        key: "bad".into(),
        body: json!({"reject": true}).to_string(),
        ..input[0].clone()
    });
    let out = i.emit(&input).await.unwrap();
    assert!(out[0].is_ok() && out[1].is_ok());
    assert!(
        matches!(&out[2], Err(ConnectorError::Invalid(m)) if m.contains("422") && m.contains("not welcome"))
    );
    assert!(out[3].is_ok(), "404 on delete is success");
    assert!(out[4].is_ok());
    assert!(matches!(&out[5], Err(ConnectorError::Invalid(_))));
    let seen = server.seen();
    let puts: Vec<_> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.len(), 3);
    assert_eq!(
        serde_json::from_slice::<Value>(&puts[0].body).unwrap(),
        json!({"n": 0})
    );
    assert_eq!(seen.iter().filter(|s| s.method == "DELETE").count(), 2);
}

async fn poisoned_after(rt: &weft::Runtime, stream: &str, config: Value) -> CallError {
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let mut i = rt
        .instantiate(&c, &grant("t", config.clone()))
        .await
        .unwrap();
    let err = i.fetch(stream, None).await.unwrap_err();
    assert!(!err.instance_usable(), "{err}");
    assert!(matches!(
        i.fetch("numbers", None).await.unwrap_err(),
        CallError::Poisoned(_)
    ));
    // A fresh instance of the same connector works.
    let mut fresh = rt.instantiate(&c, &grant("t", config)).await.unwrap();
    assert!(fresh.fetch("numbers", None).await.is_ok());
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_hits_the_deadline() {
    let rt = runtime_with(
        Limits {
            call_timeout_ms: 300,
            ..test_limits()
        },
        Default::default(),
        None,
    );
    let e = poisoned_after(&rt, "loop", json!({})).await;
    assert!(
        matches!(
            e,
            CallError::Deadline {
                timeout_ms: 300,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        matches!(&rt.events().for_tenant("t")[..], [.., ev] if matches!(ev.kind, EventKind::Deadline { .. }))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_hits_the_memory_limit() {
    let rt = runtime();
    let e = poisoned_after(&rt, "memory", json!({})).await;
    assert!(
        matches!(e, CallError::MemoryLimit { limit, .. } if limit == 32 << 20),
        "{e}"
    );
    assert!(has_event(&rt, |k| matches!(
        k,
        EventKind::MemoryLimit { .. }
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_overflows_the_stack() {
    let rt = runtime();
    let e = poisoned_after(&rt, "recursion", json!({})).await;
    assert!(matches!(e, CallError::StackOverflow { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_a_trap_with_the_message_from_stderr() {
    let rt = runtime();
    let e = poisoned_after(&rt, "panic", json!({})).await;
    match e {
        CallError::Trap { detail, .. } => {
            assert!(detail.contains("panicked on purpose"), "{detail}")
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_output_is_refused() {
    let rt = runtime_with(
        Limits {
            max_records_per_call: 1000,
            max_record_body_bytes: 1 << 20,
            ..test_limits()
        },
        Default::default(),
        None,
    );
    let e = poisoned_after(&rt, "huge-batch", json!({"total": 5000})).await;
    assert!(
        matches!(&e, CallError::BadOutput { detail, .. } if detail.contains("5000 records")),
        "{e}"
    );
    let e = poisoned_after(&rt, "huge-body", json!({})).await;
    assert!(
        matches!(&e, CallError::BadOutput { detail, .. } if detail.contains("body of")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_runaway_does_not_stop_another() {
    let rt = std::sync::Arc::new(runtime_with(
        Limits {
            call_timeout_ms: 1_000,
            ..test_limits()
        },
        Default::default(),
        None,
    ));
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let (rt2, c2) = (rt.clone(), c.clone());
    let runaway = tokio::spawn(async move {
        let mut i = rt2
            .instantiate(&c2, &TenantGrant::new("bad"))
            .await
            .unwrap();
        i.fetch("loop", None).await
    });
    let mut good = rt.instantiate(&c, &TenantGrant::new("good")).await.unwrap();
    for _ in 0..5 {
        assert!(good.fetch("numbers", None).await.is_ok());
    }
    assert!(matches!(
        runaway.await.unwrap(),
        Err(CallError::Deadline { .. })
    ));
    assert!(rt.events().for_tenant("good").is_empty());
    assert!(!rt.events().for_tenant("bad").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_is_persistent_per_tenant_and_size_limited() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let run = |tenant: &'static str| {
        let (rt, c) = (&rt, &c);
        async move {
            let mut i = rt.instantiate(c, &TenantGrant::new(tenant)).await.unwrap();
            body(&i.fetch("kv", None).await.unwrap().records[0])
        }
    };
    let first = run("a").await;
    assert_eq!(first["user1"], "dana");
    assert_eq!(first["keys"], json!(["user:1", "user:2"]));
    assert_eq!(first["counter"], 1);
    assert_eq!(
        run("a").await["counter"],
        2,
        "a new instance sees the same space"
    );
    assert_eq!(
        run("b").await["counter"],
        1,
        "another tenant has its own space"
    );

    let mut i = rt.instantiate(&c, &TenantGrant::new("a")).await.unwrap();
    let big = body(&i.fetch("kv-big", None).await.unwrap().records[0]);
    assert!(big["error"].as_str().unwrap().contains("TooLarge"), "{big}");
    assert!(
        rt.events()
            .for_tenant("a")
            .iter()
            .any(|e| matches!(e.kind, EventKind::KvRefused { .. }))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_and_stdio_become_bounded_log_lines() {
    let rt = runtime_with(
        Limits {
            max_log_lines_per_call: 100,
            ..test_limits()
        },
        Default::default(),
        None,
    );
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let mut i = rt.instantiate(&c, &TenantGrant::new("t")).await.unwrap();
    i.fetch("log", None).await.unwrap();
    let lines = i.logs();
    assert_eq!(lines.len(), 100);
    assert_eq!(lines[0].message, "fetching");
    assert_eq!(
        lines[0].fields,
        vec![("stream".to_string(), "log".to_string())]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.level == "info" && l.message == "hello from stdout")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.level == "warn" && l.message == "hello from stderr")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_see_no_env_args_files_or_sockets() {
    assert!(
        std::env::vars().count() > 0,
        "the host has an environment to leak"
    );
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let mut i = rt.instantiate(&c, &TenantGrant::new("t")).await.unwrap();
    let b = body(&i.fetch("ambient", None).await.unwrap().records[0]);
    assert_eq!(b["env"], 0, "{b}");
    assert_eq!(b["args"], 0, "{b}");
    assert_ne!(b["fs_root"], "readable", "{b}");
    assert_ne!(b["fs_cwd"], "readable", "{b}");
    assert_ne!(b["tcp"], "connected", "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_reaches_the_guest() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let cfg = json!({"total": 3, "url": "http://x"});
    let mut i = rt.instantiate(&c, &grant("t", cfg.clone())).await.unwrap();
    assert_eq!(
        body(&i.fetch("echo-config", None).await.unwrap().records[0]),
        cfg
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_become_records() {
    let rt = runtime();
    let c = rt.load_file(artifacts::TEST_SOURCE.as_ref()).await.unwrap();
    let mut i = rt.instantiate(&c, &TenantGrant::new("t")).await.unwrap();
    let rs = i
        .on_webhook(
            vec![("X-Event".into(), "deleted".into())],
            br#"{"id":"apt_1","version":7}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(rs.len(), 1);
    assert_eq!(
        (rs[0].key.as_str(), rs[0].version, rs[0].op),
        ("apt_1", 7, Operation::Delete)
    );
    let e = i
        .on_webhook(vec![], b"not json".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(e, CallError::Connector(ConnectorError::Invalid(m)) if m.contains("not JSON"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = || weft::HostConfig {
        limits: test_limits(),
        cache_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    let first = weft::Runtime::new(config()).unwrap();
    let c = first
        .load_file(artifacts::TEST_MAPPER.as_ref())
        .await
        .unwrap();
    assert!(!c.from_cache());
    drop(first);
    let second = weft::Runtime::new(config()).unwrap();
    let c2 = second
        .load_file(artifacts::TEST_MAPPER.as_ref())
        .await
        .unwrap();
    assert!(c2.from_cache());
    assert_eq!(c.digest(), c2.digest());
    let mut i = second
        .instantiate(&c2, &TenantGrant::new("t"))
        .await
        .unwrap();
    assert!(i.map(&numbers(2)).await.is_ok());
}

fn weft_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
}

#[test]
fn inspect_prints_describe_as_json() {
    let out = weft_bin()
        .args(["connectors", "inspect", artifacts::TEST_DESTINATION])
        .output()
        .unwrap();
    assert_success(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["world"], "destination");
    assert_eq!(v["contract"], "weft:connector@0.1.0");
    assert_eq!(v["describe"]["name"], "test-destination");
    assert_eq!(v["describe"]["version"], "2.0.0");
    assert_eq!(v["describe"]["config_schema"]["required"], json!(["url"]));
}

/// `inspect` compiles into the cache that `connectors add` and runs use: a
/// large component (Python, JS) is compiled once, not once per command.
#[test]
fn inspect_fills_the_compile_cache_that_add_uses() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "data_dir = \"data\"\n").unwrap();
    // `weft -c weft.toml connectors {command} test_mapper.wasm`, which succeeds.
    let connectors = |command: &str| {
        let out = weft_bin()
            .arg("-c")
            .arg(&config)
            .args(["connectors", command, artifacts::TEST_MAPPER])
            .output()
            .unwrap();
        assert_success(&out);
        out
    };
    let out = connectors("inspect");
    let digest = serde_json::from_slice::<Value>(&out.stdout).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let cached = || -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        std::fs::read_dir(dir.path().join("data/cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&digest)
            })
            .map(|p| {
                let m = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, m)
            })
            .collect()
    };
    let before = cached();
    assert_eq!(before.len(), 1, "inspect left its compilation in the cache");
    std::thread::sleep(std::time::Duration::from_millis(20));
    connectors("add");
    assert_eq!(
        cached(),
        before,
        "add used the cached compilation as it was"
    );
}

#[test]
fn inspect_explains_what_is_not_a_connector() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    // What a Rust crate without `crate-type = ["cdylib"]` leaves behind.
    let rlib = dir.path().join("libmine.rlib");
    std::fs::write(
        &rlib,
        b"!<arch>\n/               0           0     0     0       8         `\n",
    )
    .unwrap();
    let cases = [
        (text.to_str().unwrap(), "not a WebAssembly file"),
        (text.to_str().unwrap(), "crate-type = [\"cdylib\"]"),
        (rlib.to_str().unwrap(), "library archive (a Rust `.rlib`)"),
        (
            core.to_str().unwrap(),
            "core WebAssembly module, not a component",
        ),
        (artifacts::TEST_WRONG_WORLD, "wrong world"),
        (artifacts::TEST_WRONG_WORLD, "mapper-connector"),
        (artifacts::TEST_FUTURE_VERSION, "incompatible WIT version"),
        ("/nonexistent/x.wasm", "reading /nonexistent/x.wasm"),
    ];
    for (file, want) in cases {
        let out = weft_bin()
            .args(["connectors", "inspect", file])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{file} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{file}: expected {want:?} in {err}");
        assert!(out.stdout.is_empty());
    }
}

/// `weft connectors inspect … | head` must not panic when the reader goes
/// away before weft writes.
#[test]
fn inspect_into_a_closed_pipe_exits_quietly() {
    let mut child = weft_bin()
        .args(["connectors", "inspect", artifacts::TEST_DESTINATION])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}
