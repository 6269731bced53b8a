//! Hostile connectors against the sandbox: one test per break found by a
//! suite of hostile components (issue 9), each driving a component of
//! `tests/components/hostile*` the way a third party could.

use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use weft::caps::http::StaticResolver;
use weft::secrets::SecretStore;
use weft::state::kv::SledKv;
use weft::{HostConfig, HttpGrants, Limits, OriginPattern, Runtime, TenantGrant};
use weft_test_artifacts as artifacts;

/// A runtime with `limits` whose `private_hosts` are `private`.
fn runtime_for(limits: Limits, private: &[&str]) -> Runtime {
    Runtime::with_parts(
        HostConfig {
            limits,
            cache_dir: Some(cache_dir()),
            private_hosts: private.iter().map(|s| s.to_string()).collect(),
            default_rate: Default::default(),
            secrets_file: None,
        },
        SledKv::temporary().unwrap(),
        std::sync::Arc::new(StaticResolver(Default::default())),
        SecretStore::default(),
    )
    .unwrap()
}

fn grant(config: Value, allow: &[&str]) -> TenantGrant {
    TenantGrant {
        config,
        http: HttpGrants {
            allow: allow
                .iter()
                .map(|o| OriginPattern::parse(o).unwrap())
                .collect(),
            ..Default::default()
        },
        ..TenantGrant::new("t")
    }
}

/// Runs `stream` of the hostile source and returns its one result record,
/// or the call's error as text.
async fn hostile(rt: &Runtime, stream: &str, g: &TenantGrant) -> Result<Value, String> {
    let c = rt
        .load_file(artifacts::TEST_HOSTILE.as_ref())
        .await
        .unwrap();
    let mut i = rt.instantiate(&c, g).await.unwrap();
    match i.fetch(stream, None).await {
        Ok(p) => Ok(serde_json::from_str(&p.records[0].body).unwrap()),
        Err(e) => Err(e.to_string()),
    }
}

/// Fails the test instead of hanging it when something has no deadline.
/// Whether the hostile guest's answer `v` says its destination's address
/// was refused.
fn prohibited(v: &Value) -> bool {
    v["error"]
        .as_str()
        .unwrap_or("")
        .contains("DestinationIpProhibited")
}

/// A runtime whose calls have a deadline of one second.
fn runtime_with_one_second_deadline() -> Runtime {
    let limits = Limits {
        call_timeout_ms: 1_000,
        ..test_limits()
    };
    runtime_for(limits, &[])
}

/// The error, with its causes, of `load` (`what`), which must be refused
/// within 60 s.
async fn refusal<T, E: std::fmt::Display>(
    what: &str,
    load: impl Future<Output = Result<T, E>>,
) -> String {
    let e = within(what, load).await.err().expect("refused");
    format!("{e:#}")
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within 60 s"))
}

/// `test-hostile-start` with a start function added to its core module: the
/// function it exports as `weft_block_at_start`, which blocks forever on a
/// pollable. The Rust toolchain emits no start section; a hostile author
/// can add one with any binary tool, as this does.
fn with_blocking_start(component: &[u8]) -> Vec<u8> {
    use wasm_encoder::reencode::{Error, Reencode, ReencodeComponent};

    struct AddStart {
        start: Option<u32>,
    }
    impl Reencode for AddStart {
        type Error = std::convert::Infallible;
        fn intersperse_section_hook(
            &mut self,
            module: &mut wasm_encoder::Module,
            after: Option<wasm_encoder::SectionId>,
            _before: Option<wasm_encoder::SectionId>,
        ) -> Result<(), Error<Self::Error>> {
            if after == Some(wasm_encoder::SectionId::Export)
                && let Some(function_index) = self.start.take()
            {
                module.section(&wasm_encoder::StartSection { function_index });
            }
            Ok(())
        }
    }
    impl ReencodeComponent for AddStart {
        fn parse_component_submodule(
            &mut self,
            component: &mut wasm_encoder::Component,
            parser: wasmparser::Parser,
            module: &[u8],
        ) -> Result<(), Error<Self::Error>> {
            for payload in wasmparser::Parser::new(0).parse_all(module) {
                if let Ok(wasmparser::Payload::ExportSection(exports)) = payload {
                    for e in exports.into_iter().flatten() {
                        if e.name == "weft_block_at_start" {
                            self.start = Some(e.index);
                        }
                    }
                }
            }
            wasm_encoder::reencode::component_utils::parse_component_submodule(
                self, component, parser, module,
            )
        }
    }
    let mut out = wasm_encoder::Component::new();
    AddStart { start: None }
        .parse_component(&mut out, wasmparser::Parser::new(0), component)
        .unwrap();
    out.finish()
}

// 1. Instantiation has a deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_function_that_blocks_hits_the_deadline() {
    let rt = runtime_with_one_second_deadline();
    let bytes = with_blocking_start(&std::fs::read(artifacts::TEST_HOSTILE_START).unwrap());
    let e = refusal(
        "loading a component whose start function blocks",
        rt.load(&bytes),
    )
    .await;
    assert!(
        e.contains("deadline of 1000 ms") && e.contains("call_timeout_ms"),
        "{e}"
    );
}

/// As built, the blocking function runs as a static constructor at the first
/// export call: `describe`'s deadline stops it.
#[tokio::test(flavor = "multi_thread")]
async fn a_static_constructor_that_blocks_hits_describes_deadline() {
    let rt = runtime_with_one_second_deadline();
    let e = refusal(
        "loading a component whose constructor blocks",
        rt.load_file(artifacts::TEST_HOSTILE_START.as_ref()),
    )
    .await;
    assert!(
        e.contains("describe") && e.contains("deadline of 1000 ms"),
        "{e}"
    );
}

/// `weft connectors inspect` uses the configured limits, not its own.
#[test]
fn inspect_uses_the_configured_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "[limits]\ncall_timeout_ms = 700\n").unwrap();
    let file = dir.path().join("blocks.wasm");
    std::fs::write(
        &file,
        with_blocking_start(&std::fs::read(artifacts::TEST_HOSTILE_START).unwrap()),
    )
    .unwrap();
    let mut c = weft_cli(&config);
    c.args(["connectors", "inspect"]).arg(&file);
    let out = run_bounded(c);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deadline of 700 ms"), "{err}");
}

// 2. Host memory a guest can cause is bounded.
#[tokio::test(flavor = "multi_thread")]
async fn header_floods_stop_at_the_resource_and_field_limits() {
    let limits = test_limits();
    let rt = runtime_for(limits.clone(), &[]);
    // 100,000 header sets of 120 KB: refused per set (over the field limit)...
    let v = hostile(
        &rt,
        "fields-flood",
        &grant(json!({ "count": 100_000, "size": 120_000 }), &[]),
    )
    .await;
    match &v {
        Ok(v) => {
            assert_eq!(v["created"], 0, "{v}");
            assert!(v["error"].as_str().unwrap().contains("append"), "{v}");
        }
        // wasmtime traps a guest whose header set goes over the limit.
        Err(e) => assert!(e.contains("total size of fields exceeds limit"), "{e}"),
    }
    // ...and sets under it stop at the resource-table limit.
    let v = hostile(
        &rt,
        "fields-flood",
        &grant(json!({ "count": 100_000, "size": 1_000 }), &[]),
    )
    .await;
    let created = match &v {
        Ok(v) => v["created"].as_u64().unwrap(),
        // Running out of table entries traps the guest: also fine.
        Err(e) => {
            assert!(e.contains("trap") || e.contains("resource"), "{e}");
            0
        }
    };
    assert!(created <= limits.max_resources as u64, "{v:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unfinished_request_bodies_are_limited_in_flight() {
    // A server that never answers: every request stays in flight.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = test_limits();
    let rt = runtime_for(limits.clone(), &["127.0.0.1"]);
    let v = hostile(
        &rt,
        "pending-bodies",
        &grant(
            json!({ "count": 300, "size": 1 << 20, "authority": format!("127.0.0.1:{port}") }),
            &[&format!("http://127.0.0.1:{port}")],
        ),
    )
    .await
    .unwrap();
    // The request over the limit is refused, so writing its body fails.
    let started = v["started"].as_u64().unwrap();
    assert!(
        started <= limits.max_http_in_flight as u64 + 1,
        "at most max_http_in_flight bodies held: {v}"
    );
    assert!(v["error"].is_string(), "{v}");
    drop(listener);
}

// 3. Runs end, and one tenant cannot starve another.
fn endless_config(dir: &std::path::Path, extra_limits: &str) -> String {
    format!(
        r#"
data_dir = {dir:?}
[limits]
call_timeout_ms = 5000
{extra_limits}

[tenants.loud.flows.endless]
schedule = "1h"
source = {{ connector = "test-hostile@*", stream = "endless" }}
destination = {{ connector = "test-destination@^2", config = {{ url = "http://127.0.0.1:9" }} }}

[tenants.quiet.flows.numbers]
schedule = "1s"
source = {{ connector = "test-source@^1", stream = "numbers", config = {{ total = 0 }} }}
destination = {{ connector = "test-destination@^2", config = {{ url = "http://127.0.0.1:9" }} }}
"#
    )
}

async fn host_for(text: &str) -> weft::Host {
    let h = weft::Host::open_with(
        weft::config::WeftConfig::parse(text).unwrap(),
        std::sync::Arc::new(weft::state::SledState::temporary().unwrap()),
        std::sync::Arc::new(test_resolver()),
        SecretStore::default(),
    )
    .unwrap();
    for f in [
        artifacts::TEST_HOSTILE,
        artifacts::TEST_SOURCE,
        artifacts::TEST_DESTINATION,
    ] {
        h.registry.add(&h.runtime, f.as_ref()).await.unwrap();
    }
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_never_stops_is_stopped_by_the_run_limits() {
    let dir = tempfile::tempdir().unwrap();
    let h = host_for(&endless_config(dir.path(), "max_run_pages = 500")).await;
    let r = within(
        "an endless source",
        h.run_flow("loud", "endless", weft::flow::Trigger::Manual, &|_| {}),
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, weft::state::RunOutcome::Failed);
    assert_eq!(r.pages, 500);
    let e = r.error.unwrap();
    assert!(e.contains("limits.max_run_pages"), "{e}");
    // The pages so far are committed: the next run goes on from there.
    assert_eq!(
        h.state.cursor("loud", "endless").unwrap().as_deref(),
        Some("500")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_endless_flow_does_not_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    // The endless run would go on for an hour: the other tenant must still
    // run on its own schedule meanwhile.
    let h =
        std::sync::Arc::new(host_for(&endless_config(dir.path(), "max_run_seconds = 3600")).await);
    let quiet = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let q2 = quiet.clone();
    let done = std::sync::Arc::new(tokio::sync::Notify::new());
    let d2 = done.clone();
    let stop = async move { d2.notified().await };
    let watcher = {
        let quiet = quiet.clone();
        let done = done.clone();
        async move {
            while quiet.load(std::sync::atomic::Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.notify_one();
        }
    };
    let report = move |r: &weft::state::RunRecord| {
        if r.tenant == "quiet" && r.outcome == weft::state::RunOutcome::Succeeded {
            q2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    };
    let serving = weft::service::scheduler::serve(&h, stop, &report);
    within("two runs of the quiet tenant", async {
        let (served, ()) = tokio::join!(serving, watcher);
        served.unwrap();
    })
    .await;
    assert!(quiet.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

// 5. Address classes: IPv6 forms that embed a private IPv4 address.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_ipv4_forms_of_private_addresses_are_refused() {
    let rt = runtime_for(test_limits(), &["127.0.0.1"]);
    for host in [
        "[::127.0.0.1]:80",
        "[::ffff:127.0.0.1]:80",
        "[64:ff9b::7f00:1]:80",
        "[64:ff9b::a9fe:a9fe]:80",
        "[2002:7f00:1::1]:80",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]:80",
        "[fe80::1]:80",
    ] {
        let v = hostile(&rt, "raw-get", &grant(json!({ "authority": host }), &["*"]))
            .await
            .unwrap();
        assert!(prohibited(&v), "{host}: {v}");
    }
}

// 6. Strings a guest hands back have length limits.
#[tokio::test(flavor = "multi_thread")]
async fn describe_with_huge_strings_is_refused_by_its_limits() {
    let rt = runtime_for(test_limits(), &[]);
    let e = rt
        .load_file(artifacts::TEST_HOSTILE_DESCRIBE.as_ref())
        .await
        .err()
        .expect("refused");
    let e = format!("{e:#}");
    assert!(e.contains("limits.max_label_bytes"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_keys_are_refused_and_long_errors_cut() {
    let limits = test_limits();
    let rt = runtime_for(limits.clone(), &[]);
    let e = hostile(&rt, "long-key", &grant(json!({ "size": 1 << 20 }), &[]))
        .await
        .unwrap_err();
    assert!(e.contains("limits.max_record_key_bytes"), "{e}");
    let e = hostile(&rt, "long-error", &grant(json!({ "size": 1 << 20 }), &[]))
        .await
        .unwrap_err();
    assert!(e.len() < limits.max_text_bytes + 512, "{} bytes", e.len());
    assert!(
        e.contains("limits.max_text_bytes"),
        "{}",
        &e[e.len() - 100..]
    );
}

// 7. The kv quota counts what entries really cost, and keys are limited.
#[tokio::test(flavor = "multi_thread")]
async fn kv_floods_of_tiny_entries_stop_at_the_quota() {
    let limits = Limits {
        max_kv_keys: 5_000,
        ..test_limits()
    };
    let rt = runtime_for(limits, &[]);
    let v = hostile(&rt, "kv-flood", &grant(json!({ "count": 1_000_000 }), &[]))
        .await
        .unwrap();
    assert_eq!(v["set"], 5_000, "{v}");
    assert!(v["error"].as_str().unwrap().contains("max_kv_keys"), "{v}");
}

// 8. No user info in URLs, and `Host` is the checked origin's.
#[tokio::test(flavor = "multi_thread")]
async fn urls_with_user_info_are_refused_and_host_is_the_origins() {
    let server = TestServer::start(|_, _| Reply::ok("hi")).await;
    let port = server.addr.port();
    let rt = runtime_for(test_limits(), &["127.0.0.1"]);
    let allow = [format!("http://127.0.0.1:{port}")];
    let allow: Vec<&str> = allow.iter().map(|s| s.as_str()).collect();
    let v = hostile(
        &rt,
        "raw-get",
        &grant(
            json!({ "authority": format!("evil:18083@127.0.0.1:{port}") }),
            &allow,
        ),
    )
    .await
    .unwrap();
    assert!(v.get("status").is_none(), "refused: {v}");
    assert!(server.seen().is_empty(), "nothing reached the server");
    let v = hostile(
        &rt,
        "raw-get",
        &grant(json!({ "authority": format!("127.0.0.1:{port}") }), &allow),
    )
    .await
    .unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        server.seen()[0].header("host").as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
}

// 9. `private_hosts` entries name ports.
#[tokio::test(flavor = "multi_thread")]
async fn private_hosts_with_a_port_allow_that_port_only() {
    let listed = TestServer::start(|_, _| Reply::ok("listed")).await;
    let other = TestServer::start(|_, _| Reply::ok("other")).await;
    let entry = format!("127.0.0.1:{}", listed.addr.port());
    let rt = runtime_for(test_limits(), &[&entry]);
    let v = hostile(
        &rt,
        "raw-get",
        &grant(json!({ "authority": entry }), &["*"]),
    )
    .await
    .unwrap();
    assert_eq!(v["status"], 200, "{v}");
    let v = hostile(
        &rt,
        "raw-get",
        &grant(
            json!({ "authority": format!("127.0.0.1:{}", other.addr.port()) }),
            &["*"],
        ),
    )
    .await
    .unwrap();
    assert!(prohibited(&v), "an unlisted port is refused: {v}");
    assert!(other.seen().is_empty());
}

// 4. Compiling is bounded in size, time and memory.

/// A component holding one core function of `depth` nested blocks: cheap to
/// send, very expensive to compile.
fn nested_blocks_component(depth: usize) -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, Component, Function, FunctionSection, Instruction, Module,
        ModuleSection, TypeSection,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    module.section(&funcs);
    let mut f = Function::new([]);
    for _ in 0..depth {
        f.instruction(&Instruction::Block(BlockType::Empty));
    }
    for _ in 0..depth {
        f.instruction(&Instruction::End);
    }
    f.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// `weft` with a configuration of `limits` in a fresh directory.
fn weft_with_limits(dir: &std::path::Path, limits: &str) -> std::process::Command {
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n[limits]\n{limits}\n", dir.join("data")),
    )
    .unwrap();
    weft_cli(&config)
}

fn run_bounded(mut c: std::process::Command) -> std::process::Output {
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("weft did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_compile_bomb_is_stopped_by_the_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(&bomb, nested_blocks_component(1_000_000)).unwrap();
    let mut c = weft_with_limits(dir.path(), "compile_timeout_ms = 2000");
    c.args(["connectors", "add"]).arg(&bomb);
    let out = run_bounded(c);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.compile_timeout_ms"), "{err}");
}

/// Runs `weft ARGS` with `limits`; it must fail saying `expected`.
fn refused(limits: &str, args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = weft_with_limits(dir.path(), limits);
    c.args(args);
    let out = run_bounded(c);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(expected), "{err}");
}

#[test]
fn compiling_is_bounded_in_memory() {
    refused(
        "compile_memory_bytes = 67108864",
        &["connectors", "inspect", artifacts::ACME_CRM],
        "limits.compile_memory_bytes",
    );
    let dir = tempfile::tempdir().unwrap();
    // With the default budget the same component compiles.
    let mut c = weft_with_limits(dir.path(), "");
    c.args(["connectors", "inspect", artifacts::ACME_CRM]);
    let out = run_bounded(c);
    assert_success(&out);
}

#[test]
fn components_over_the_size_limit_are_refused_before_compiling() {
    refused(
        "max_component_bytes = 100000",
        &["connectors", "add", artifacts::ACME_CRM],
        "limits.max_component_bytes",
    );
}
