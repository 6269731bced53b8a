//! Figures of `weft serve`, printed (not asserted; these machines are shared
//! and noisy): accepted webhook deliveries per second and the latency to
//! the durable `2xx` under load, and the schedule lag with 10,000 tenants.
//! Run with `cargo bench -p weft-host --bench service` (part of
//! `make bench`).
//!
//! - **Webhooks**: the service over one flow (test source → discarding
//!   destination) on an OS-picked port; the load generator is `wrk`
//!   (Debian's package, `make bench` installs it) in a process of its own,
//!   2 threads (`WEFT_BENCH_WRK_THREADS`) keeping 64 keep-alive connections
//!   busy for 10 s with distinct Standard Webhooks deliveries signed in
//!   advance (`benches/webhooks.lua`); without wrk, or with
//!   `WEFT_BENCH_GENERATOR=inprocess`, a hyper client in this process sends
//!   50,000. Latency is measured by the client from sending a request to its
//!   `202` (in the inbox and synced). The processor delivers the accepted
//!   webhooks meanwhile, in the same process: its CPU is part of the figure.
//! - **Schedule lag**: 10,000 tenants with one flow each on a 5-minute
//!   schedule (test source with nothing to read); the scheduler runs for
//!   `WEFT_BENCH_LAG_SECS` (default 60) and the lag of every scheduled start
//!   (start − due) is read from the `weft_schedule_lag_seconds` histogram
//!   (p99 as the upper bound of its bucket).
//! - **Alert check**: what the alerter asks the state after every run, a
//!   tenant's count of dead letters, with 3,000 tenants of 6 dead letters
//!   each in sled: the count kept per tenant against reading and decoding
//!   every dead letter (what it did before; issue 22 found it was three
//!   quarters of the service's CPU at 3,000 tenants).

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft::Host;
use weft::config::WeftConfig;
use weft::secrets::SecretStore;
use weft::state::SledState;
use weft_test_artifacts as artifacts;

#[path = "shared/histogram.rs"]
mod histogram;
#[path = "../tests/shared/webhook_signature.rs"]
mod webhook_signature;
use histogram::{histogram_buckets, histogram_quantiles, histogram_quantiles_since};

const SECRET: &str = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtYmVuY2gtd2ViaG9vaw==";
const DELIVERIES: usize = 50_000;
const CONNECTIONS: usize = 64;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `WEFT_BENCH_ONLY=webhooks|lag|alerts`: one part alone (for profiling).
    let only = std::env::var("WEFT_BENCH_ONLY").unwrap_or_default();
    // `WEFT_BENCH_STATE=postgres`: webhooks and schedule lag on PostgreSQL,
    // the lag with 1, 2 and 3 replicas (`WEFT_BENCH_REPLICAS`, e.g. `1,3`).
    let store = Store::from_env();
    rt.block_on(async {
        if only.is_empty() || only == "webhooks" {
            webhooks(&store).await;
        }
        if only.is_empty() || only == "lag" {
            let replicas: Vec<usize> = match &store {
                Store::Sled => vec![1],
                Store::Postgres(_) => std::env::var("WEFT_BENCH_REPLICAS")
                    .unwrap_or_else(|_| "1,2,3".into())
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect(),
            };
            for n in replicas {
                schedule_lag(&store, n).await;
            }
        }
    });
    if only.is_empty() || only == "alerts" {
        alert_check();
    }
}

/// The state the figures are taken on: sled in the host's directory, or
/// (`WEFT_BENCH_STATE=postgres`) a PostgreSQL server this process starts,
/// one database per part.
enum Store {
    Sled,
    Postgres(weft_test_pg::Postgres),
}

impl Store {
    fn from_env() -> Store {
        match std::env::var("WEFT_BENCH_STATE").as_deref() {
            Ok("postgres") => Store::Postgres(
                weft_test_pg::Postgres::start_durable().expect("starting PostgreSQL"),
            ),
            _ => Store::Sled,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Store::Sled => "sled",
            Store::Postgres(_) => "PostgreSQL",
        }
    }

    /// A new, empty database (PostgreSQL), or `None` (sled).
    fn fresh(&self) -> Option<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        match self {
            Store::Sled => None,
            Store::Postgres(pg) => {
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(pg.create_database(&format!("bench{n}")).unwrap())
            }
        }
    }
}

/// A host over `config` in `dir`, its state in sled there or in the
/// PostgreSQL database `db` (as replica `replica`).
async fn host_on(
    config: &str,
    dir: &std::path::Path,
    db: Option<&str>,
    replica: &str,
) -> Arc<Host> {
    let config = WeftConfig::parse(&format!("data_dir = {:?}\n{config}", dir)).unwrap();
    let state: Arc<dyn weft::state::StateStore> = match db {
        None => Arc::new(SledState::open(&dir.join("state")).unwrap()),
        Some(url) => Arc::new(
            weft::state::PgState::open_with(
                url,
                weft::state::postgres::PgOptions {
                    replica: Some(replica.into()),
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
    };
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let secrets = SecretStore::from_map([("hook".to_string(), SECRET.to_string())].into())
        .with_vault(weft::secrets::Vault::new(&key, state.clone()).unwrap());
    let h = Host::open_with(
        config,
        state,
        Arc::new(weft::caps::http::SystemResolver),
        secrets,
    )
    .unwrap();
    for f in [artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION] {
        h.registry.add(&h.runtime, f.as_ref()).await.unwrap();
    }
    Arc::new(h)
}

fn sign(id: &str, ts: u64, body: &str) -> String {
    webhook_signature::sign(SECRET, id, ts, body)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn webhooks(store: &Store) {
    println!("webhooks, state in {}:", store.label());
    let dir = tempfile::tempdir().unwrap();
    let db = store.fresh();
    let h = host_on(
        r#"
[tenants.bench.flows.hooks]
schedule = "24h"
source = { connector = "test-source@^1", stream = "numbers", config = { total = 0 }, webhook = { secrets = [{ secret = "hook" }] } }
destination = { connector = "test-destination@^2", config = { url = "discard:" } }
"#,
        dir.path(),
        db.as_deref(),
        "r0",
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(weft::service::run(
        h.clone(),
        listener,
        async move {
            let _ = stop_rx.await;
        },
        |_| {},
        vec![],
    ));
    let generator = std::env::var("WEFT_BENCH_GENERATOR").unwrap_or_default();
    if generator != "inprocess" && wrk_available() {
        wrk_load(addr, dir.path()).await;
        drain_and_stop(stop_tx, service).await;
        return;
    }
    // Signed in advance: the generator only sends.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let requests: Vec<(String, String, String)> = (0..DELIVERIES)
        .map(|n| {
            let id = format!("evt_{n}");
            let body = format!(r#"{{"id":"w{n}","version":1}}"#);
            let sig = sign(&id, ts, &body);
            (id, sig, body)
        })
        .collect();
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut lanes = Vec::new();
    for _ in 0..CONNECTIONS {
        let (requests, next) = (requests.clone(), next.clone());
        lanes.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut refused = 0usize;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((id, sig, body)) = requests.get(n) else {
                    break;
                };
                let req = http::Request::post("/hooks/bench/hooks")
                    .header("host", addr.to_string())
                    .header("webhook-id", id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from(body.clone())))
                    .unwrap();
                let t = Instant::now();
                send.ready().await.unwrap();
                let resp = send.send_request(req).await.unwrap();
                let ok = resp.status().as_u16() == 202;
                let _ = resp.into_body().collect().await;
                if ok {
                    lat.push(t.elapsed());
                } else {
                    refused += 1;
                }
            }
            (lat, refused)
        }));
    }
    let mut lat = Vec::new();
    let mut refused = 0;
    for l in lanes {
        let (l, r) = l.await.unwrap();
        lat.extend(l);
        refused += r;
    }
    let wall = started.elapsed();
    lat.sort();
    println!(
        "webhook ingress: {} deliveries accepted in {:.2} s = {:.0}/s over {CONNECTIONS} connections; latency to the durable 202: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {refused} not accepted",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    drain_and_stop(stop_tx, service).await;
}

/// The service's own view: its histogram of arrival → durable `2xx`
/// (without the client's and the kernel's queues).
fn print_server_side_ack() {
    let (n, p50, p99) = histogram_quantiles(&weft::metrics::encode(), "weft_webhook_ack_seconds");
    println!(
        "webhook ingress, measured inside the service: {n} acknowledgements, arrival to durable 2xx p50 ≤ {:.1} ms, p99 ≤ {:.1} ms (histogram bucket bounds)",
        p50 * 1e3,
        p99 * 1e3
    );
}

/// Waits for the processor to deliver the backlog, then stops the service.
async fn drain_and_stop(
    stop_tx: tokio::sync::oneshot::Sender<()>,
    service: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    print_server_side_ack();
    let t = Instant::now();
    while weft::metrics::metrics().webhook_inbox.get() > 0 && t.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "webhook processing: the inbox was empty {:.1} s after the last delivery was accepted",
        t.elapsed().as_secs_f64()
    );
    let _ = stop_tx.send(());
    service.await.unwrap().unwrap();
}

fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// The load from `wrk` (Debian's package; `make bench` installs it), in a
/// process of its own: 2 threads (`WEFT_BENCH_WRK_THREADS`), 64
/// connections (`WEFT_BENCH_CONNECTIONS`), 10 s, each request a
/// distinct delivery signed in advance (`benches/webhooks.lua`).
async fn wrk_load(addr: std::net::SocketAddr, dir: &std::path::Path) {
    const SECS: u64 = 10;
    const SIGNED: usize = 400_000;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let file = dir.join("deliveries.tsv");
    let mut text = String::with_capacity(SIGNED * 160);
    for n in 0..SIGNED {
        let id = format!("evt_{n}");
        let body = format!(r#"{{"id":"w{n}","version":1}}"#);
        let sig = sign(&id, ts, &body);
        text.push_str(&format!("{id}\t{sig}\t{body}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/webhooks.lua");
    // `WEFT_BENCH_WRK_THREADS`: wrk's threads (2 by default, one a core).
    let threads: usize = std::env::var("WEFT_BENCH_WRK_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    // `WEFT_BENCH_CONNECTIONS`: wrk's connections (64 by default).
    let connections: usize = std::env::var("WEFT_BENCH_CONNECTIONS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(CONNECTIONS);
    let out = tokio::process::Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{SECS}s"),
            "--timeout",
            "5s",
            "-s",
            script,
        ])
        .arg(format!("http://{addr}"))
        .arg("--")
        .arg(&file)
        .arg(ts.to_string())
        .arg(threads.to_string())
        .output()
        .await
        .expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("WEFT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no figures:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (requests, secs) = (field("requests"), field("duration_us") / 1e6);
    let accepted = requests - field("not_202") - field("errors");
    println!(
        "webhook ingress (wrk {threads} threads, {connections} connections, {SECS} s): {accepted:.0} deliveries accepted = {:.0}/s; latency to the durable 202: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} not 202, {:.0} errors",
        accepted / secs,
        field("p50_us") / 1e3,
        field("p99_us") / 1e3,
        field("max_us") / 1e3,
        field("not_202"),
        field("errors"),
    );
}

async fn schedule_lag(store: &Store, replicas: usize) {
    const TENANTS: usize = 10_000;
    let secs: u64 = std::env::var("WEFT_BENCH_LAG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("max_concurrent_runs = 4\n");
    for t in 0..TENANTS {
        config.push_str(&format!(
            "[tenants.t{t}.flows.poll]\nschedule = \"5m\"\nsource = {{ connector = \"test-source@^1\", stream = \"numbers\", config = {{ total = 0 }} }}\ndestination = {{ connector = \"test-destination@^2\", config = {{ url = \"discard:\" }} }}\n"
        ));
    }
    // Replicas share one database (each a host of its own in this
    // process, with a directory of its own); sled has one.
    let db = store.fresh();
    let mut hosts = Vec::new();
    let mut dirs = Vec::new();
    for r in 0..replicas {
        let d = tempfile::tempdir().unwrap();
        hosts.push(host_on(&config, d.path(), db.as_deref(), &format!("r{r}")).await);
        dirs.push(d);
    }
    drop(dir);
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let before = histogram_buckets(&weft::metrics::encode(), "weft_schedule_lag_seconds");
    let t = Instant::now();
    let mut schedulers = Vec::new();
    for h in &hosts {
        let (h, r2) = (h.clone(), runs.clone());
        schedulers.push(tokio::spawn(async move {
            weft::service::scheduler::serve(
                &h,
                tokio::time::sleep(Duration::from_secs(secs)),
                &move |_| {
                    r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                },
            )
            .await
            .unwrap();
        }));
    }
    for s in schedulers {
        s.await.unwrap();
    }
    let wall = t.elapsed().as_secs_f64();
    let (n, p50, p99) = histogram_quantiles_since(
        &weft::metrics::encode(),
        "weft_schedule_lag_seconds",
        &before,
    );
    let ended = runs.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "schedule lag, {TENANTS} tenants on 5-minute schedules, {} ({replicas} replica(s)), {secs} s: {n} scheduled starts ({:.1}/s), {ended} runs ended; lag p50 ≤ {p50} s, p99 ≤ {p99} s (histogram bucket bounds)",
        store.label(),
        n as f64 / wall,
    );
}

/// The alerter's question after a run, `StateStore::dead_letter_count`,
/// against what answered it before (`dead_letters` of the tenant, which
/// reads every dead letter of every tenant).
fn alert_check() {
    use weft::model::{ConnectorError, Operation, Record};
    use weft::state::{DeadLetter, Handled, PageCommit, StateStore};
    const TENANTS: usize = 3_000;
    const PER_TENANT: usize = 6;
    let state = SledState::temporary().unwrap();
    for t in 0..TENANTS {
        let tenant = format!("t{t}");
        let dead: Vec<DeadLetter> = (0..PER_TENANT)
            .map(|i| {
                let key = format!("k{i}");
                DeadLetter {
                    id: DeadLetter::id_for(&tenant, "dest", "k", &key),
                    tenant: tenant.clone(),
                    flow: "f".into(),
                    stage: "map".into(),
                    connector: "m@1.0.0".into(),
                    destination: "d@1.0.0".into(),
                    record: Record {
                        key,
                        kind: "k".into(),
                        version: 1,
                        op: Operation::Upsert,
                        body: r#"{"appointment":{"id":"apt_1","title":"A meeting"}}"#.into(),
                    },
                    error: ConnectorError::Invalid("contact con_1 does not exist".into()),
                    attempts: 1,
                    first_seen_ms: 1,
                    last_seen_ms: 1,
                }
            })
            .collect();
        let records = dead
            .iter()
            .map(|d| Handled {
                key: d.record.key.clone(),
                version: 1,
                present: None,
                settles: None,
                before: Default::default(),
            })
            .collect();
        state
            .commit_page(
                &tenant,
                "f",
                &PageCommit {
                    scope: "dest".into(),
                    cursor: None,
                    records,
                    dead_letters: dead,
                    ..Default::default()
                },
            )
            .unwrap();
    }
    let time = |f: &dyn Fn(&str) -> usize| {
        let calls = 200;
        let t = Instant::now();
        for i in 0..calls {
            assert_eq!(f(&format!("t{}", i * 7 % TENANTS)), PER_TENANT);
        }
        t.elapsed() / calls as u32
    };
    let kept = time(&|t| state.dead_letter_count(t).unwrap());
    let scanned = time(&|t| state.dead_letters(Some(t), None).unwrap().len());
    println!(
        "alert check after a run, {TENANTS} tenants x {PER_TENANT} dead letters: count kept {kept:.1?}, reading every dead letter {scanned:.1?} ({:.0}x)",
        scanned.as_secs_f64() / kept.as_secs_f64().max(1e-9)
    );
}
