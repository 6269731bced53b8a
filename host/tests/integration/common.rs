//! Helpers shared by the host's integration tests: a local HTTP server that
//! records what arrived and answers from a script, and runtime builders that
//! share one compile cache per test process.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use weft::caps::http::StaticResolver;
use weft::secrets::SecretStore;
use weft::state::kv::SledKv;
use weft::{HostConfig, Limits, Runtime};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_owned())
    }
}

/// What the script answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Option<std::time::Duration>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: vec![],
            body: body.into(),
            delay: None,
        }
    }
    /// This answer, `d` late.
    pub fn after(mut self, d: std::time::Duration) -> Self {
        self.delay = Some(d);
        self
    }
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, body)
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A recording HTTP server on 127.0.0.1 with an OS-chosen port. The script
/// gets each request and how many requests came before it. It stops when
/// dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let s2 = seen.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let seen = s2.clone();
            let script = script.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 64 << 20)
                    .await
                    .unwrap_or_default();
                let s = Seen {
                    method: parts.method,
                    path: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    headers: parts.headers,
                    body,
                };
                let n = {
                    let mut v = seen.lock().unwrap();
                    v.push(s.clone());
                    v.len() - 1
                };
                let r = script(&s, n);
                if let Some(d) = r.delay {
                    tokio::time::sleep(d).await;
                }
                let mut resp: Response =
                    (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
                for (k, v) in r.headers {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addr,
            seen,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// One compile cache for the tests, inside cargo's target directory, so each
/// component compiles once (entries are keyed by digest and engine).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weft-compile-cache")
}

/// Limits small enough for tests to hit quickly.
pub fn test_limits() -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        call_timeout_ms: 5_000,
        stack_bytes: 256 << 10,
        max_instances: 16,
        ..Limits::default()
    }
}

/// Names the tests resolve without DNS.
pub fn test_resolver() -> StaticResolver {
    let mut m: HashMap<String, Vec<IpAddr>> = HashMap::new();
    m.insert("evil.test".into(), vec!["127.0.0.1".parse().unwrap()]);
    m.insert(
        "metadata.test".into(),
        vec!["169.254.169.254".parse().unwrap()],
    );
    m.insert("localhost".into(), vec!["127.0.0.1".parse().unwrap()]);
    StaticResolver(m)
}

/// A runtime whose loopback address (by IP literal) is allowed, with the
/// static resolver and the given secrets.
pub fn runtime_with(
    limits: Limits,
    secrets: SecretStore,
    rate: Option<weft::caps::http::Rate>,
) -> Runtime {
    runtime_over(limits, secrets, rate, SledKv::temporary().unwrap())
}

/// [`runtime_with`] over the given key-value store.
pub fn runtime_over(
    limits: Limits,
    secrets: SecretStore,
    rate: Option<weft::caps::http::Rate>,
    kv: Arc<dyn weft::state::kv::KvStore>,
) -> Runtime {
    let config = HostConfig {
        limits,
        cache_dir: Some(cache_dir()),
        private_hosts: vec!["127.0.0.1".into()],
        default_rate: rate.unwrap_or_default(),
        secrets_file: None,
    };
    Runtime::with_parts(config, kv, Arc::new(test_resolver()), secrets).unwrap()
}

/// Whether `rt` has recorded an event whose kind passes `is`.
pub fn has_event(rt: &Runtime, is: impl Fn(&weft::events::EventKind) -> bool) -> bool {
    rt.events().all().iter().any(|e| is(&e.kind))
}

pub fn runtime() -> Runtime {
    runtime_with(test_limits(), SecretStore::default(), None)
}

/// A destination for the test destination (`{url}/records/{key}`): keeps
/// `key -> body`, counts PUTs per key, lists deletes (a missing key answers
/// `404`), and answers `503` while `down` is set.
#[derive(Clone, Default)]
pub struct Sink {
    pub records: Arc<Mutex<std::collections::BTreeMap<String, serde_json::Value>>>,
    pub puts: Arc<Mutex<std::collections::BTreeMap<String, u32>>>,
    pub deletes: Arc<Mutex<Vec<String>>>,
    pub down: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    pub async fn serve(&self) -> TestServer {
        let sink = self.clone();
        TestServer::start(move |s, _| {
            if sink.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Reply::new(503, "down for maintenance").header("retry-after", "0");
            }
            let key = s.path.trim_start_matches("/records/").to_owned();
            match s.method.as_str() {
                "PUT" => {
                    *sink.puts.lock().unwrap().entry(key.clone()).or_default() += 1;
                    let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
                    let existed = sink.records.lock().unwrap().insert(key, body).is_some();
                    Reply::new(if existed { 200 } else { 201 }, "")
                }
                "DELETE" => {
                    sink.deletes.lock().unwrap().push(key.clone());
                    match sink.records.lock().unwrap().remove(&key) {
                        Some(_) => Reply::new(204, ""),
                        None => Reply::new(404, ""),
                    }
                }
                _ => Reply::new(405, ""),
            }
        })
        .await
    }

    pub fn keys(&self) -> Vec<String> {
        self.records.lock().unwrap().keys().cloned().collect()
    }

    pub fn records(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.records.lock().unwrap().clone()
    }
}

/// A host of `weft.toml` text over temporary state, the test resolver and
/// no secrets, with `components` registered.
/// The head of a test configuration: `data_dir`, 127.0.0.1 as a private
/// host, and a deadline of `call_timeout_ms` per guest call.
pub fn config_head(data_dir: &Path, call_timeout_ms: u64) -> String {
    format!(
        r#"
data_dir = {data_dir:?}
private_hosts = ["127.0.0.1"]

[limits]
call_timeout_ms = {call_timeout_ms}
"#
    )
}

/// The table of flow `name` of tenant `acme`: the test source's `stream`
/// (configured by `source_cfg`), `mappers`, `destination` (a stage as TOML).
pub fn acme_flow(
    name: &str,
    stream: &str,
    source_cfg: &str,
    mappers: &str,
    destination: &str,
) -> String {
    format!(
        r#"
[tenants.acme.flows.{name}]
source = {{ connector = "test-source@^1", stream = "{stream}", config = {source_cfg} }}
mappers = [{mappers}]
destination = {destination}
"#
    )
}

/// Two attempts at most, 10 to 20 ms apart, for the flow `sync` of `acme`.
pub const SHORT_RETRY: &str = "[tenants.acme.flows.sync.retry]
max_attempts = 2
base_delay_ms = 10
max_delay_ms = 20
";

/// The test destination stage, writing to `url`.
pub fn test_destination(url: &str) -> String {
    format!(
        r#"{{ connector = "test-destination@^2", config = {{ url = "{url}" }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}"#
    )
}

/// A sink destination serving on a local port, and a data directory.
pub async fn sink_and_dir() -> (Sink, TestServer, tempfile::TempDir) {
    let sink = Sink::default();
    let server = sink.serve().await;
    (sink, server, tempfile::tempdir().unwrap())
}

pub async fn host_with(text: &str, components: &[&std::path::Path]) -> weft::Host {
    let h = weft::Host::open_with(
        weft::config::WeftConfig::parse(text).unwrap(),
        Arc::new(weft::state::SledState::temporary().unwrap()),
        Arc::new(test_resolver()),
        SecretStore::default(),
    )
    .unwrap();
    for f in components {
        h.registry
            .add(&h.runtime, f)
            .await
            .unwrap_or_else(|e| panic!("registering {}: {e:#}", f.display()));
    }
    h
}

/// A manual run of tenant `acme`'s `flow`.
pub async fn run_manual(h: &weft::Host, flow: &str) -> weft::state::RunRecord {
    h.run_flow("acme", flow, weft::flow::Trigger::Manual, &|_| {})
        .await
        .unwrap()
}

/// The `weft` binary under test, reading `config`, logging warnings only.
pub fn weft_cli(config: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_weft"));
    c.arg("--config").arg(config).env("WEFT_LOG", "warn");
    c
}

/// Asserts that a command exited successfully, showing its stderr if not.
#[track_caller]
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The component `name` that `make target` built into `target/guests/{dir}`.
pub fn guest_component(dir: &str, name: &str, target: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests")
        .join(dir)
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make {target}` first",
        path.display()
    );
    path
}
