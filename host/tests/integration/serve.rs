//! The `weft serve` binary as an operator runs it: `kill -9` while signed
//! webhooks arrive loses no acknowledged delivery; SIGTERM exits 0; a
//! connector version uploaded through the API (`weft --server … connectors
//! add`) is used by the next run while the service keeps running, and a pin
//! rolls it back; local commands that cannot open the state say to use
//! `--server`. And its front door as the internet meets it: slow and
//! greedy clients, a low file-descriptor limit, large and refused uploads,
//! and Schemathesis against the OpenAPI document.

use crate::common::*;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_test_artifacts as artifacts;

const SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC10ZXN0LXdlYmhvb2stc2VjcmV0";
const OPERATOR: &str = "op-token-for-serve-tests";

fn weft(config: &Path) -> Command {
    let mut c = weft_cli(config);
    c.env("WEFT_ADMIN_TOKEN", OPERATOR)
        .env_remove("WEFT_SERVER");
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A destination that keeps the keys it was sent.
async fn sink() -> (TestServer, Arc<Mutex<BTreeSet<String>>>) {
    let keys: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let k = keys.clone();
    let server = TestServer::start(move |s, _| {
        let key = s.path.trim_start_matches("/records/").to_owned();
        if s.method == "PUT" {
            k.lock().unwrap().insert(key);
        }
        Reply::new(201, "")
    })
    .await;
    (server, keys)
}

fn setup(dir: &Path, port: u16, dest: &str, mapper: &str) -> std::path::PathBuf {
    setup_with(dir, port, dest, mapper, "", "1h")
}

fn setup_with(
    dir: &Path,
    port: u16,
    dest: &str,
    mapper: &str,
    extra: &str,
    schedule: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join("secrets.toml"), format!("hook = \"{SECRET}\"\n")).unwrap();
    std::fs::write(
        dir.join("weft.key"),
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let path = dir.join("weft.toml");
    std::fs::write(
        &path,
        format!(
            r#"
data_dir = "data"
secrets_file = "secrets.toml"
private_hosts = ["127.0.0.1"]

[service]
listen = "127.0.0.1:{port}"
key_file = "weft.key"
{extra}
[tenants.acme.flows.sync]
schedule = "{schedule}"
source = {{ connector = "test-source@^1", stream = "numbers", config = {{ total = 3, page_size = 3 }}, webhook = {{ secrets = [{{ secret = "hook" }}] }} }}
mappers = [{mapper}]
destination = {{ connector = "test-destination@^2", config = {{ url = "{dest}" }}, http = {{ allow = ["http://127.0.0.1:*"] }} }}
"#
        ),
    )
    .unwrap();
    path
}

/// A service ready to start: a sink destination (with the keys it got), a
/// data directory with `weft.toml` on `port` (`extra` in its `[service]`
/// table) and the test source and destination registered.
struct Ready {
    /// The sink, serving while this lives.
    _server: TestServer,
    keys: Arc<Mutex<BTreeSet<String>>>,
    dir: tempfile::TempDir,
    port: u16,
    path: std::path::PathBuf,
}

async fn ready(extra: &str) -> Ready {
    let (server, keys) = sink().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = setup_with(dir.path(), port, &server.url(""), "", extra, "1h");
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        add(&path, f);
    }
    Ready {
        _server: server,
        keys,
        dir,
        port,
        path,
    }
}

fn add(path: &Path, file: &str) {
    let out = weft(path)
        .args(["connectors", "add", file])
        .output()
        .unwrap();
    assert_success(&out);
}

async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(u16, Value), String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"));
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let resp = send
        .send_request(b.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    request(
        port,
        method,
        path,
        &[
            ("authorization", format!("Bearer {OPERATOR}")),
            ("content-type", "application/json".into()),
        ],
        body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    )
    .await
    .unwrap()
}

fn sign(id: &str, ts: u64, body: &str) -> String {
    crate::webhook_signature::sign(SECRET, id, ts, body)
}

async fn deliver(port: u16, n: usize) -> Result<u16, String> {
    let id = format!("evt_{n}");
    let body = json!({ "id": format!("w{n}"), "version": 1 }).to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = sign(&id, ts, &body);
    request(
        port,
        "POST",
        "/hooks/acme/sync",
        &[
            ("webhook-id", id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
            ("content-type", "application/json".into()),
        ],
        body.into_bytes(),
    )
    .await
    .map(|(s, _)| s)
}

/// A `weft serve` child, killed when dropped (a failing test must not leave
/// it running).
/// When the test fails, the end of the service's log is printed.
struct Served(Child, std::path::PathBuf);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() || std::env::var_os("WEFT_TEST_SHOW_LOG").is_some() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("DEBUG") && !l.contains("TRACE"))
                .collect();
            eprintln!("--- last lines above DEBUG of {} ---", self.1.display());
            for l in &lines[lines.len().saturating_sub(80)..] {
                eprintln!("{l}");
            }
        }
    }
}

async fn start_serve(path: &Path, port: u16) -> Served {
    // Debug logs, kept to check that no secret reaches them.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path.with_file_name("serve.log"))
        .unwrap();
    // Killed and waited for on drop, should it not become ready.
    let child = Served(
        weft(path)
            .arg("serve")
            .env("WEFT_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
        path.with_file_name("serve.log"),
    );
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Ok((200, _)) = request(port, "GET", "/readyz", &[], vec![]).await {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("weft serve did not become ready");
}

/// Neither the webhook secret nor the operator token is in the service's
/// debug logs.
fn assert_no_secrets_in_logs(path: &Path) {
    let log = std::fs::read_to_string(path.with_file_name("serve.log")).unwrap();
    assert!(log.len() > 100, "the service logged: {log}");
    for secret in [SECRET, SECRET.trim_start_matches("whsec_"), OPERATOR] {
        assert!(!log.contains(secret), "a secret is in the logs");
    }
}

fn terminate(child: &mut Served) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    child.0.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_webhooks_arrive_loses_no_acknowledged_delivery() {
    let (server, keys) = sink().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = setup(dir.path(), port, &server.url(""), "");
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        add(&path, f);
    }
    let mut child = start_serve(&path, port).await;
    // Deliveries go out 8 at a time; after 150 acknowledgements the process
    // is killed, and the deliveries in flight then get no answer.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let pid = child.0.id();
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for lane in 0..8 {
        let (acked, killed) = (acked.clone(), killed.clone());
        tasks.push(tokio::spawn(async move {
            for n in (lane..400).step_by(8) {
                if let Ok(s) = deliver(port, n).await
                    && (200..300).contains(&s)
                {
                    let mut a = acked.lock().unwrap();
                    a.push(format!("w{n}"));
                    if a.len() >= 150 && !killed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        Command::new("kill")
                            .args(["-9", &pid.to_string()])
                            .status()
                            .unwrap();
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let _ = child.0.wait();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150 && acked.len() < 400, "{}", acked.len());
    // Restart: the inbox is processed.
    let mut child = start_serve(&path, port).await;
    let t = Instant::now();
    loop {
        let got = keys.lock().unwrap().clone();
        let lost: Vec<&String> = acked.iter().filter(|a| !got.contains(*a)).collect();
        if lost.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "acknowledged deliveries lost: {} of {} (e.g. {:?})",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A repeat of an acknowledged delivery is acknowledged, not processed
    // again, after the restart too.
    assert_eq!(deliver(port, 0).await.unwrap(), 200);
    // SIGTERM: a clean exit.
    let status = terminate(&mut child);
    assert!(status.success(), "{status:?}");
    assert_no_secrets_in_logs(&path);
}

async fn run_now(port: u16) -> Value {
    let (_, before) = api(port, "GET", "/v1/runs?tenant=acme&flow=sync&limit=1", None).await;
    let before_id = before[0]["id"].clone();
    let (s, v) = api(port, "POST", "/v1/tenants/acme/flows/sync/runs", None).await;
    assert_eq!(s, 202, "{v}");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let (_, runs) = api(port, "GET", "/v1/runs?tenant=acme&flow=sync&limit=1", None).await;
        let r = &runs[0];
        if r["id"] != before_id && r["outcome"] != "running" && r["trigger"] == "manual" {
            return r.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run did not finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_uploaded_to_the_running_service_is_used_next_and_a_pin_rolls_it_back() {
    let (server, _keys) = sink().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = setup(
        dir.path(),
        port,
        &server.url(""),
        r#"{ connector = "test-mapper@>=0.4", config = {} }"#,
    );
    for f in [
        artifacts::TEST_SOURCE,
        artifacts::TEST_MAPPER,
        artifacts::TEST_DESTINATION,
    ] {
        add(&path, f);
    }
    let mut child = start_serve(&path, port).await;
    // The state is the service's now: a local command says what to do.
    let out = weft(&path).args(["runs", "list"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--server"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = run_now(port).await;
    assert_eq!(r["connectors"][1], "test-mapper@0.4.0", "{r}");

    // Upload 0.5.0 with the CLI against the server.
    let server_url = format!("http://127.0.0.1:{port}");
    let out = weft(&path)
        .args([
            "--server",
            &server_url,
            "connectors",
            "add",
            artifacts::TEST_MAPPER_V2,
        ])
        .env("WEFT_TOKEN", OPERATOR)
        .output()
        .unwrap();
    assert_success(&out);
    let r = run_now(port).await;
    assert_eq!(r["connectors"][1], "test-mapper@0.5.0", "{r}");
    let (_, list) = api(port, "GET", "/v1/connectors", None).await;
    let v5 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "test-mapper" && c["version"] == "0.5.0")
        .unwrap();
    assert_eq!(v5["used_by"], json!(["acme/sync"]));

    // Roll back by pinning the flow to 0.4.0.
    let (_, mut tenant) = api(port, "GET", "/v1/tenants/acme", None).await;
    tenant["flows"]["sync"]["mappers"][0]["connector"] = json!("test-mapper@0.4.0");
    let (s, v) = api(port, "PUT", "/v1/tenants/acme", Some(tenant)).await;
    assert_eq!(s, 200, "{v}");
    let r = run_now(port).await;
    assert_eq!(r["connectors"][1], "test-mapper@0.4.0", "{r}");

    // The CLI reads runs from the server too.
    let out = weft(&path)
        .args(["--server", &server_url, "runs", "list", "--tenant", "acme"])
        .env("WEFT_TOKEN", OPERATOR)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme/sync: succeeded"));
    assert!(terminate(&mut child).success());
    assert_no_secrets_in_logs(&path);
    // The pin survives a restart: tenants written over the API persist.
    let out = weft(&path)
        .args(["run", "--tenant", "acme", "--flow", "sync"])
        .output()
        .unwrap();
    assert_success(&out);
    let out = weft(&path)
        .args(["runs", "list", "--tenant", "acme"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = weft(&path)
        .args([
            "runs",
            "show",
            text.split('(').nth(1).unwrap().split(')').next().unwrap(),
        ])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["connectors"][1], "test-mapper@0.4.0");
}

/// A flow that fails `after_failures` runs in a row raises one alert, and
/// one more when it recovers; nothing in between.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_flow_alerts_once_and_once_more_when_it_recovers() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let d2 = down.clone();
    let dest = TestServer::start(move |_, _| {
        if d2.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::new(503, "down")
        } else {
            Reply::new(201, "")
        }
    })
    .await;
    let alerts: Arc<Mutex<Vec<Value>>> = Arc::default();
    let a2 = alerts.clone();
    let receiver = TestServer::start(move |s, _| {
        a2.lock()
            .unwrap()
            .push(serde_json::from_slice(&s.body).unwrap());
        Reply::new(204, "")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        "[alerts]\nurl = \"{}\"\nafter_failures = 2\n",
        receiver.url("/alerts")
    );
    let path = setup_with(dir.path(), port, &dest.url(""), "", &extra, "1s");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[tenants.acme.flows.sync]",
        "[tenants.acme.flows.sync.retry]\nmax_attempts = 1\n\n[tenants.acme.flows.sync]",
    );
    std::fs::write(&path, text).unwrap();
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        add(&path, f);
    }
    let mut child = start_serve(&path, port).await;
    let failing = |a: &Vec<Value>, state: &str| {
        a.iter()
            .filter(|v| v["alert"] == "failing" && v["state"] == state)
            .count()
    };
    let wait_for = |state: &'static str| {
        let alerts = alerts.clone();
        async move {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) {
                if failing(&alerts.lock().unwrap(), state) > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no {state} alert: {:?}", alerts.lock().unwrap());
        }
    };
    wait_for("firing").await;
    // More failed runs: no second alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(failing(&alerts.lock().unwrap(), "firing"), 1);
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("resolved").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = alerts.lock().unwrap().clone();
    assert_eq!(
        (failing(&a, "firing"), failing(&a, "resolved")),
        (1, 1),
        "{a:?}"
    );
    let fired = a.iter().find(|v| v["alert"] == "failing").unwrap();
    assert_eq!(
        (fired["tenant"].as_str(), fired["flow"].as_str()),
        (Some("acme"), Some("sync"))
    );
    assert!(terminate(&mut child).success());
}

/// A connection from `from` (a loopback address) that sends the start of a
/// request and never the rest.
async fn half_sent(from: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    let mut s = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await?;
    s.write_all(b"POST /hooks/acme/sync HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await?;
    Ok(s)
}

/// What a connection gets within `wait`: `Some(first bytes)` (empty for a
/// close), `None` if it is still held open.
async fn answer_within(s: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 512];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => Some(format!("error: {e}")),
    }
}

/// `/healthz` answers, with its status, within `wait`.
async fn health_within(port: u16, wait: Duration) -> Option<u16> {
    tokio::time::timeout(wait, request(port, "GET", "/healthz", &[], vec![]))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(s, _)| s)
}

/// Issue 18, item 6: half-sent requests were held forever (0 of 2,000 slow
/// connections closed after 40 s), so enough of them made `/healthz` and
/// webhooks unreachable. Now one client address holds at most
/// `max_connections_per_ip` connections (the rest are answered 503 with
/// `Retry-After`), and a request's headers must arrive within
/// `header_timeout_secs`.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_cannot_keep_health_or_webhooks_from_answering() {
    let Ready {
        keys, port, path, ..
    } = &ready("header_timeout_secs = 2\nmax_connections_per_ip = 40\n").await;
    let (port, path) = (*port, path.as_path());
    let _child = start_serve(path, port).await;
    // A kept-alive connection that sends no next request is closed too.
    let mut idle = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        s
    };
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(half_sent("127.0.0.2", port).await.unwrap());
    }
    // Past the per-address cap: told at once to come back later.
    let mut held = Vec::new();
    let mut refused = 0;
    let answers = futures::future::join_all(slow.into_iter().map(|mut s| async move {
        let a = answer_within(&mut s, Duration::from_millis(500)).await;
        (s, a)
    }))
    .await;
    for (s, a) in answers {
        match a {
            None => held.push(s),
            Some(a) => {
                assert!(
                    a.starts_with("HTTP/1.1 503") && a.contains("retry-after: 1"),
                    "{a:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(held.len(), 40, "{refused} refused");
    // Everyone else is served meanwhile.
    assert_eq!(health_within(port, Duration::from_secs(2)).await, Some(200));
    assert_eq!(deliver(port, 1).await.unwrap(), 202);
    // The half-sent requests are closed once their headers are late, and
    // so is the idle kept-alive connection.
    assert!(
        answer_within(&mut idle, Duration::from_secs(4))
            .await
            .is_some(),
        "an idle kept-alive connection is still open after 4 s"
    );
    for s in &mut held {
        let a = answer_within(s, Duration::from_secs(4)).await;
        assert!(a.is_some(), "a slow connection is still open after 4 s");
    }
    let t = Instant::now();
    while !keys.lock().unwrap().contains("w1") {
        assert!(t.elapsed() < Duration::from_secs(30), "w1 not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 18, item 6, with the process's file-descriptor limit low: the
/// connection cap stays below it, so a full server answers `503` with
/// `Retry-After` instead of failing to accept (and `/healthz` answers, if
/// only to say so), and it serves again once the slow clients time out.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_says_so_and_recovers() {
    let Ready {
        dir, port, path, ..
    } = &ready("header_timeout_secs = 4\nmax_connections_per_ip = 0\n").await;
    let (port, path) = (*port, path.as_path());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let exe = weft(path).get_program().to_owned();
    let cmd = weft(path);
    // `ulimit -n` in a shell that then becomes weft serve.
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let script = format!(
        "ulimit -n 400 && exec \"$0\" {} serve",
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script).arg(exe);
    for (k, v) in envs {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        sh.current_dir(d);
    }
    let _child = Served(
        sh.stdout(Stdio::null()).stderr(log).spawn().unwrap(),
        dir.path().join("serve.log"),
    );
    let t = Instant::now();
    while health_within(port, Duration::from_secs(1)).await != Some(200) {
        assert!(t.elapsed() < Duration::from_secs(60), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut slow = Vec::new();
    for i in 0..500 {
        let from = format!("127.0.0.{}", 2 + i % 50);
        slow.push(half_sent(&from, port).await.unwrap());
    }
    // Full: an answer, not a hang.
    // Under load a refusal can be cut short (a reset): one 503 of a few
    // tries is the point.
    let mut full = None;
    for _ in 0..20 {
        let a = tokio::time::timeout(
            Duration::from_millis(500),
            request(port, "GET", "/healthz", &[], vec![]),
        )
        .await;
        match a {
            Ok(Ok((503, _))) => {
                full = Some(503);
                break;
            }
            other => full = Some(other.ok().and_then(Result::ok).map_or(0, |(s, _)| s)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(full, Some(503), "a full server answers 503");
    // Serving again after the header timeout.
    let t = Instant::now();
    while health_within(port, Duration::from_secs(1)).await != Some(200) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not serving again after the slow clients timed out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(slow);
}

/// Issue 18, item 8: uploads were capped at 2 MiB (the framework's default
/// body limit), so Python (18 MiB) and JavaScript (12.5 MiB) connectors
/// could not be hot-loaded, and `weft --server … connectors add` of a
/// refused upload printed nothing and exited 0. Now an upload streams up to
/// `limits.max_component_bytes`, and the CLI reports a refusal with the
/// server's reason and a non-zero exit.
#[tokio::test(flavor = "multi_thread")]
async fn large_uploads_go_through_and_refusals_are_errors() {
    let Ready {
        dir, port, path, ..
    } = &ready("").await;
    let (port, path) = (*port, path.as_path());
    let _child = start_serve(path, port).await;
    let remote = |file: &Path| {
        weft(path)
            .args(["--server", &format!("http://127.0.0.1:{port}")])
            .args(["connectors", "add"])
            .arg(file)
            .env("WEFT_TOKEN", OPERATOR)
            .output()
            .unwrap()
    };
    let python =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests/python/http-post-py.wasm");
    let size = std::fs::metadata(&python).unwrap().len();
    assert!(size > 4 << 20, "{size} bytes");
    let out = remote(&python);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("http-post-py"), "{text}");
    // Past max_component_bytes (64 MiB by default): refused, and said so.
    let big = dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; 65 << 20]).unwrap();
    let out = remote(&big);
    assert!(!out.status.success(), "a refused upload exits non-zero");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("413") || err.contains("closed the connection"),
        "{err}"
    );
    // Not a component: the reason, without the server's paths.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = remote(&junk);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400"), "{err}");
    assert!(!err.contains("uploads/"), "the server's path leaks: {err}");
}

/// Issue 18, item 9: the OpenAPI document declared no path parameters, no
/// request bodies and only `200` everywhere, so a client generator or a
/// fuzzer got nothing from it. Now it is generated from the handlers'
/// types; Schemathesis (installed in `.venv` by `make setup`) fuzzes every
/// operation with an operator token and with a tenant token and finds no
/// server error and no status, content type or body the document does not
/// declare.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_the_document_does_not_declare() {
    let st = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: `make setup` installs it",
        st.display()
    );
    let Ready { port, path, .. } = &ready("").await;
    let (port, path) = (*port, path.as_path());
    let _child = start_serve(path, port).await;
    let (s, minted) = api(
        port,
        "POST",
        "/v1/tokens",
        Some(json!({ "name": "fuzz", "tenant": "acme" })),
    )
    .await;
    assert_eq!(s, 201, "{minted}");
    let tenant = minted["token"].as_str().unwrap().to_owned();
    // The tenant first: the operator's run may well delete the tenant.
    for (who, token) in [("tenant", tenant), ("operator", OPERATOR.to_owned())] {
        // The tenant's run aims at its own tenant and flow (the operator's
        // at any), so its writes meet the checks of what a tenant may set.
        let work = tempfile::tempdir().unwrap();
        if who == "tenant" {
            std::fs::write(
                work.path().join("schemathesis.toml"),
                "[parameters]\n\"path.tenant\" = \"acme\"\n\"path.flow\" = \"sync\"\n",
            )
            .unwrap();
        }
        let mut st = tokio::process::Command::new(&st);
        st.arg("run");
        // The event stream answers for minutes by design (its `200` and
        // content type are checked by the console's browser tests).
        st.args(["--exclude-path", "/v1/events"]);
        if who == "tenant" {
            // Revoking its own token would end the run's reach.
            st.args(["--exclude-name", "DELETE /v1/tokens/{id}"]);
        }
        let out = st
            .current_dir(work.path())
            .args([
                &format!("http://127.0.0.1:{port}/openapi.json"),
                "--header",
                &format!("Authorization: Bearer {token}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "12",
                "--seed",
                "18",
                "--workers",
                "2",
                "--generation-database",
                "none",
                "--no-color",
                "--output-truncate",
                "false",
            ])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis with the {who} token:\n{}\n{}",
            &text[text.len().saturating_sub(20_000)..],
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("generated") || l.contains("⚠️") || l.contains("Tested:"))
            .map(str::trim)
            .collect();
        eprintln!("schemathesis ({who}): {}", summary.join(" | "));
    }
}

/// Issue 18: `weft serve` without a key to seal secrets printed "listening
/// on" before it exited 1; now it says what is missing and never claims to
/// listen.
#[tokio::test(flavor = "multi_thread")]
async fn serve_without_a_key_says_so_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = setup(dir.path(), port, "http://127.0.0.1:9", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("key_file = \"weft.key\"\n", "");
    std::fs::write(&path, text).unwrap();
    let out = weft(&path)
        .arg("serve")
        .env_remove("WEFT_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.contains("WEFT_SECRET_KEY"), "{stderr}");
}

/// Issue 19, item 5: webhook IDs acknowledged just before a `kill -9` were
/// forgotten (6 of 75 repeats were accepted with 202 and processed again):
/// an ID went into the database at the next append, unflushed, and was not
/// rebuilt from the inbox at open. Now the inbox's deliveries rebuild the
/// ID memory at open, and a segment of the inbox is removed only once the
/// IDs of its deliveries are durable: every repeat after the crash is 200.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_webhook_ids_are_remembered_after_kill_9() {
    let Ready {
        keys, port, path, ..
    } = &ready("").await;
    let port = *port;
    let mut child = start_serve(path, port).await;
    let ids: Vec<usize> = (2000..2030).collect();
    for &n in &ids {
        assert_eq!(deliver(port, n).await.unwrap(), 202);
    }
    // Processed, and then the process dies at once.
    let t = Instant::now();
    while !ids
        .iter()
        .all(|n| keys.lock().unwrap().contains(&format!("w{n}")))
    {
        assert!(t.elapsed() < Duration::from_secs(30), "not processed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Command::new("kill")
        .args(["-9", &child.0.id().to_string()])
        .status()
        .unwrap();
    let _ = child.0.wait();
    let _child = start_serve(path, port).await;
    let mut accepted_again = vec![];
    for &n in &ids {
        let status = deliver(port, n).await.unwrap();
        if status != 200 {
            accepted_again.push((n, status));
        }
    }
    assert!(
        accepted_again.is_empty(),
        "repeats not recognised after kill -9: {accepted_again:?}"
    );
}

/// Issue 20, item 6: `weft --server … run` only queued. With `--wait` it
/// waits for the run to end, prints its summary line and exits with its
/// outcome.
/// `run --wait` reports the run it asked for, not a scheduled one that
/// ends meanwhile: with the flow polled every second and up to date, a
/// backfill asked for over the API is the run that emits every record.
#[tokio::test(flavor = "multi_thread")]
async fn run_wait_reports_its_own_run_beside_scheduled_ones() {
    let (server, _keys) = sink().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = setup_with(dir.path(), port, &server.url(""), "", "", "1s");
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        add(&path, f);
    }
    let _child = start_serve(&path, port).await;
    for _ in 0..3 {
        let stdout = run_and_wait(&path, port, &["--backfill"]);
        assert!(stdout.contains("3 emitted"), "{stdout}");
    }
}

/// `weft --server … run --tenant acme --flow sync --wait` with `extra`
/// arguments; its output, once it succeeded.
fn run_and_wait(path: &Path, port: u16, extra: &[&str]) -> String {
    let out = weft(path)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args(["run", "--tenant", "acme", "--flow", "sync", "--wait"])
        .args(extra)
        .env("WEFT_TOKEN", OPERATOR)
        .output()
        .unwrap();
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_against_a_server_can_wait_for_the_outcome() {
    let Ready {
        keys, port, path, ..
    } = &ready("").await;
    let _child = start_serve(path, *port).await;
    let stdout = run_and_wait(path, *port, &[]);
    assert!(stdout.starts_with("acme/sync: succeeded"), "{stdout}");
    assert!(stdout.contains("3 emitted"), "{stdout}");
    assert_eq!(keys.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_serve_forgets_the_runs_beyond_what_it_keeps() {
    let Ready { port, path, .. } = &ready("[state]\nkeep_runs = 2\n").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let out = weft(path).arg("run").output().unwrap();
        assert_success(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = stdout
            .trim()
            .rsplit(" (")
            .next()
            .unwrap()
            .trim_end_matches(')');
        ids.push(id.to_owned());
    }
    let _child = start_serve(path, *port).await;
    let listed = || async {
        let (status, runs) = api(*port, "GET", "/v1/runs?tenant=acme&limit=50", None).await;
        assert_eq!(status, 200, "{runs}");
        runs.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let t = Instant::now();
    let mut seen = listed().await;
    while seen.contains(&ids[0]) && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = listed().await;
    }
    // The two newest stay; the older two went at the start.
    assert!(
        seen.contains(&ids[3]) && seen.contains(&ids[2]),
        "{seen:?} {ids:?}"
    );
    assert!(
        !seen.contains(&ids[1]) && !seen.contains(&ids[0]),
        "{seen:?} {ids:?}"
    );
}
