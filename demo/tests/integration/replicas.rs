//! Issue 22's proof: three `weft serve` replicas, each a process of its
//! own, share one PostgreSQL behind a round-robin balancer that Acme's
//! webhooks go through. Acme's users change things all along (as in the
//! chaos test), webhooks are duplicated, reordered and dropped, every flow
//! is polled every 3 s, and replicas are killed with `kill -9`: one during
//! the first seconds (syncs and webhooks under way), another later, each
//! restarted a little after. At the end:
//!
//! - the calendars and the dashboard equal what Acme says;
//! - no two runs writing one place overlapped, across replicas (from the
//!   run records in the shared state);
//! - every delivery a replica acknowledged was processed (the shared inbox
//!   is empty);
//! - after each kill, the flows ran again (on another replica) within the
//!   lease time and a schedule;
//! - a connector registered and a tenant changed through one replica are
//!   live on the others;
//! - Acme never rate-limited the replicas' OAuth client: they share the
//!   tenant's request quota through the database.

use crate::chaos::{
    FLOWS, Weft, World, assert_exact, copy_compiled, now_ms, overlaps, runs, serve_config_in,
    settle, storm, stormy_acme, subscribe,
};
use crate::support::{free_port, last_known};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weft_demo::DemoEnv;

/// How long a replica's leases and webhook claims last in this test.
const LEASE_SECS: u64 = 4;

/// A round-robin HTTP balancer on 127.0.0.1 in front of `backends`: a
/// backend that does not answer (killed) is skipped; none answering is a
/// `502`, which Acme retries.
async fn balancer(backends: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (backends, next) = (backends.clone(), next.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    forward(req, backends.clone(), next.fetch_add(1, Ordering::Relaxed))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

async fn forward(
    req: hyper::Request<hyper::body::Incoming>,
    backends: Arc<Vec<String>>,
    first: usize,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "content-length" | "content-type"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    for i in 0..backends.len() {
        let backend = &backends[(first + i) % backends.len()];
        let body = (!body.is_empty()).then(|| {
            (
                content_type.as_str(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        });
        if let Ok(a) = weft_demo::http(
            parts.method.as_str(),
            &format!("{backend}{path}"),
            &headers,
            body,
        )
        .await
        {
            return Ok(hyper::Response::builder()
                .status(a.status)
                .body(Full::new(Bytes::from(a.text)))
                .unwrap());
        }
    }
    Ok(hyper::Response::builder()
        .status(502)
        .body(Full::new(Bytes::from_static(b"no replica answered")))
        .unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_on_postgres_with_kill_9_end_in_what_acme_says() {
    let (mut rng, secs) = storm(30);
    let pg = weft_test_pg::Postgres::start().unwrap();
    let url = pg.create_database("weft").unwrap();
    // The test's own host is a replica too: it registers the connectors
    // (their bytes go into the database) and starts no scheduler.
    let env = DemoEnv::start_on_postgres(stormy_acme(), vec![last_known("t1")], &url)
        .await
        .unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let lb = balancer(
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
    )
    .await;
    let mut replicas = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data = format!("replica-{i}");
        // Each replica has its own data directory (its compile cache and
        // its copy of the components); only the database is shared.
        copy_compiled(&env, &data);
        // (No second tenant here: the chaos test's `t2` is not in this world.)
        let mut text = serve_config_in(&env, &data, *port, "3s")
            .replace("\n[tenants.t2]\nactive = false\n", "");
        text = text.replace(
            "[service]\n",
            &format!("[service]\npublic_url = \"{lb}\"\n"),
        );
        text.push_str(&format!(
            "\n[state]\nbackend = \"postgres\"\nurl = \"{url}\"\nreplica = \"r{i}\"\nlease_seconds = {LEASE_SECS}\n"
        ));
        let config = env.dir.path().join(format!("replica-{i}.toml"));
        std::fs::write(&config, text).unwrap();
        replicas.push(
            Weft::start(
                config,
                format!("http://127.0.0.1:{port}"),
                env.dir.path().join(format!("replica-{i}.log")),
            )
            .await,
        );
    }
    for w in &replicas {
        let (s, v) = crate::support::api(&w.url, None, "GET", "/readyz", None)
            .await
            .unwrap();
        assert!(s == 200 || s == 503, "{s} {v}");
    }
    // Subscribed through replica 0: Acme calls the balancer.
    subscribe(&replicas[0], "t1").await;
    // A tenant change made through replica 0 is live on replica 2 within
    // two seconds (it reads the tenant back with the change).
    let (s, mut tenant) = replicas[0].call("GET", "/v1/tenants/t1", None).await;
    assert_eq!(s, 200, "{tenant}");
    tenant["flows"]["touchpoints"]["retry"]["max_attempts"] = 9.into();
    let (s, v) = replicas[0]
        .call("PUT", "/v1/tenants/t1", Some(tenant))
        .await;
    assert_eq!(s, 200, "{v}");
    let t = Instant::now();
    loop {
        let (_, seen) = replicas[2].call("GET", "/v1/tenants/t1", None).await;
        if seen["flows"]["touchpoints"]["retry"]["max_attempts"] == 9 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not live on r2: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut world = World::read(&env).await;
    let mut kills: Vec<u64> = vec![];
    let mut changes = 0;
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    // (replica, when to kill it, how long it stays down)
    let plan = [
        (1usize, Duration::from_secs(2), Duration::from_millis(1500)),
        (
            2usize,
            Duration::from_secs(secs / 2),
            Duration::from_millis(2500),
        ),
    ];
    let mut next = 0;
    while Instant::now() < end {
        world.change(&env, &mut rng).await;
        changes += 1;
        if rng.random_bool(0.04) {
            let w = &replicas[rng.random_range(0..3)];
            if w.child.is_some() {
                let flow = FLOWS[rng.random_range(0..FLOWS.len())];
                let (s, v) = w
                    .call(
                        "POST",
                        &format!("/v1/tenants/t1/flows/{flow}/runs"),
                        Some(serde_json::json!({})),
                    )
                    .await;
                assert!(s < 300, "{s} {v}");
            }
        }
        if next < plan.len() && start.elapsed() >= plan[next].1 {
            let (i, _, down) = plan[next];
            replicas[i].kill();
            kills.push(now_ms());
            let back = Instant::now() + down;
            while Instant::now() < back {
                world.change(&env, &mut rng).await;
                changes += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(10..100))).await;
            }
            replicas[i].restart().await;
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..150))).await;
    }
    eprintln!(
        "{changes} changes, {} kills; {} webhook attempts",
        kills.len(),
        env.acme.deliveries().len()
    );

    let exact = settle(&env, &replicas[0]).await;
    if !exact.differences.is_empty() {
        for w in &replicas {
            eprintln!("{}:\n{}", w.url, w.log_tail());
        }
    }
    assert_exact(&exact);

    // Every acknowledged delivery was processed: nothing waits in the
    // shared inbox (asked as a replica would at its start).
    let t = Instant::now();
    loop {
        let left = env.host.state.inbox_pending().unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} deliveries never processed",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let runs = runs(&replicas[0], "t1").await;
    let overlapping = overlaps(&runs, &kills);
    assert!(overlapping.is_empty(), "{overlapping:#?}");
    // After each kill, every flow ran again within the lease time and a
    // schedule (with room for a loaded machine).
    for k in &kills {
        for flow in FLOWS {
            let resumed = runs.iter().any(|r| {
                r["flow"] == flow
                    && r["started_ms"]
                        .as_u64()
                        .is_some_and(|s| s > *k && s < k + (LEASE_SECS + 3 + 10) * 1000)
            });
            assert!(
                resumed,
                "{flow} did not run within the lease time after the kill at {k}"
            );
        }
    }
    // Acme's rate held for the replicas together: its OAuth client (all
    // replicas') was never answered 429.
    let requests = env.acme.requests();
    let limited = requests
        .iter()
        .filter(|r| r.auth == "bearer" && r.status == 429)
        .count();
    eprintln!(
        "{} requests to Acme with the OAuth client, {limited} answered 429",
        requests.iter().filter(|r| r.auth == "bearer").count()
    );
    assert_eq!(limited, 0, "Acme rate-limited the replicas' client");
    // The work was shared: runs of more than one replica (by record).
    let by: std::collections::BTreeSet<&str> =
        runs.iter().filter_map(|r| r["replica"].as_str()).collect();
    eprintln!("runs by replica: {by:?}");
    assert!(by.len() >= 2, "runs by replica: {by:?}");
    let triggers: std::collections::BTreeSet<&str> =
        runs.iter().filter_map(|r| r["trigger"].as_str()).collect();
    assert!(
        triggers.contains("webhook") && triggers.contains("schedule"),
        "{triggers:?}"
    );
    for w in &mut replicas {
        w.kill();
    }
}
