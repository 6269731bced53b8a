//! Figures of `weft serve`, printed (not asserted; these machines are shared
//! and noisy): accepted webhook deliveries per second and the latency to
//! the durable `2xx` under load, and the schedule lag with 10,000 tenants.
//! Run with `cargo bench -p weft-host --bench service` (part of
//! `make bench`).
//!
//! - **Webhooks**: the service over one flow (test source → discarding
//!   destination) on an OS-picked port; the load generator (hyper, in this
//!   process) keeps 64 keep-alive connections busy with distinct, correctly
//!   signed Standard Webhooks deliveries. Latency is measured by the client
//!   from sending a request to its `202` (written to the inbox and flushed).
//!   The processor delivers the accepted webhooks meanwhile, in the same
//!   process: its CPU is part of the figure.
//! - **Schedule lag**: 10,000 tenants with one flow each on a 5-minute
//!   schedule (test source with nothing to read); the scheduler runs for
//!   `WEFT_BENCH_LAG_SECS` (default 60) and the lag of every scheduled start
//!   (start − due) is read from the `weft_schedule_lag_seconds` histogram
//!   (p99 as the upper bound of its bucket).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft::config::WeftConfig;
use weft::runner::Host;
use weft::secrets::SecretStore;
use weft::state::SledState;
use weft_test_artifacts as artifacts;

const SECRET: &str = "whsec_YmVuY2gtd2ViaG9vay1zZWNyZXQtYmVuY2gtd2ViaG9vaw==";
const DELIVERIES: usize = 50_000;
const CONNECTIONS: usize = 64;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `WEFT_BENCH_ONLY=webhooks|lag`: one part alone (for profiling).
    let only = std::env::var("WEFT_BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only != "lag" {
            webhooks().await;
        }
        if only != "webhooks" {
            schedule_lag().await;
        }
    });
}

async fn host(config: &str, dir: &std::path::Path) -> Arc<Host> {
    let config = WeftConfig::parse(&format!("data_dir = {:?}\n{config}", dir)).unwrap();
    let state: Arc<dyn weft::state::StateStore> =
        Arc::new(SledState::open(&dir.join("state")).unwrap());
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
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(
        r#"
[tenants.bench.flows.hooks]
schedule = "24h"
source = { connector = "test-source@^1", stream = "numbers", config = { total = 0 }, webhook = { secrets = [{ secret = "hook" }] } }
destination = { connector = "test-destination@^2", config = { url = "discard:" } }
"#,
        dir.path(),
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
    // How long the processor takes to deliver the backlog.
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

/// p50 and p99 (bucket upper bounds) of a histogram in the text format.
fn histogram_quantiles(text: &str, name: &str) -> (usize, f64, f64) {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let (le, count) = rest.split_once("\"} ").unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            buckets.push((le, count.trim().parse().unwrap()));
        }
    }
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let q = |p: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= total * p)
            .map(|b| b.0)
            .unwrap_or(f64::NAN)
    };
    (total as usize, q(0.5), q(0.99))
}

async fn schedule_lag() {
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
    let h = host(&config, dir.path()).await;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r2 = runs.clone();
    let before = histogram_quantiles(&weft::metrics::encode(), "weft_schedule_lag_seconds").0;
    weft::runner::serve(
        &h,
        tokio::time::sleep(Duration::from_secs(secs)),
        &move |_| {
            r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .await
    .unwrap();
    let (n, p50, p99) = histogram_quantiles(&weft::metrics::encode(), "weft_schedule_lag_seconds");
    println!(
        "schedule lag, {TENANTS} tenants on 5-minute schedules, {secs} s: {} scheduled starts, {} runs ended; lag p50 ≤ {p50} s, p99 ≤ {p99} s (histogram bucket bounds)",
        n - before,
        runs.load(std::sync::atomic::Ordering::Relaxed)
    );
}
