//! `make bench`: how long a change in Acme takes to reach the calendar by
//! webhook, through `weft serve` (issue 19 asks for p99 under 0.5 s).
//!
//! The demo's world on this machine (Acme sandbox, dashboard sandbox,
//! Radicale) and `weft serve` in this process over it; the tenant's
//! appointments flow subscribes at Acme (`webhook.register`) after its first
//! sync. Then, `WEFT_BENCH_CHANGES` times (default 100), one appointment's
//! title changes through Acme's control API, and the clock runs from that
//! change until a CalDAV `GET` of the event shows the new title (read every
//! 5 ms); 200 ms later the next change. Each delivery costs the tenant two
//! Acme requests (its contact, the users), so at a faster pace the
//! tenant's Acme budget (`http.rate`, 10/s by default) paces the deliveries
//! and sets the figure (about 150 ms at one change every 60 ms); Acme's own
//! rate limit is lifted, the tenant's is not. Prints p50, p90, p99 and max; asserts nothing (these machines are
//! shared and noisy).

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft_demo::{DemoEnv, TenantSetup, http};
use weft_sandbox::acme::AcmeConfig;
use weft_sandbox::acme::data::Counts;

const OPERATOR: &str = "latency-bench-operator-token";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn api(url: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {OPERATOR}");
    let a = http(
        method,
        &format!("{url}{path}"),
        &[("authorization", auth.as_str())],
        body.map(|b| ("application/json", b.to_string())),
    )
    .await
    .unwrap();
    (
        a.status,
        serde_json::from_str(&a.text).unwrap_or(Value::Null),
    )
}

async fn bench() {
    let changes: usize = std::env::var("WEFT_BENCH_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let acme = AcmeConfig {
        counts: Counts {
            users: 3,
            contacts: 20,
            appointments: 40,
            activities: 40,
        },
        // Acme's 10 requests/s would decide the figure at this bench's
        // pace (each delivery looks up its contact): lift it.
        faults: weft_sandbox::acme::Faults {
            rate_per_second: 10_000.0,
            rate_burst: 10_000,
            ..Default::default()
        },
        ..AcmeConfig::default()
    };
    let env = DemoEnv::start(acme, vec![TenantSetup::new("t1")])
        .await
        .unwrap();
    env.sync("t1").await.unwrap();
    let weft_demo::Serving {
        url,
        stop,
        task: service,
    } = env.serve(OPERATOR).await;
    let (_, mut tenant) = api(&url, "GET", "/v1/tenants/t1", None).await;
    tenant["flows"]["appointments"]["source"]["webhook"] = json!({ "register": true });
    let (s, v) = api(&url, "PUT", "/v1/tenants/t1", Some(tenant)).await;
    assert_eq!(s, 200, "{v}");

    // An appointment of the first user that is in their calendar.
    let email = env.user_emails().await.unwrap()[0].clone();
    let calendar = env.calendar("t1", &email).await.unwrap();
    let uid = calendar.keys().next().expect("an event").clone();
    let id = uid
        .strip_prefix("acme-")
        .and_then(|u| u.strip_suffix("@t1"))
        .unwrap()
        .to_owned();
    let event_url = format!("{}acme-{id}.ics", env.calendar_url("t1", &email));
    let mut took = Vec::with_capacity(changes);
    for n in 0..changes {
        let title = format!("Latency {n}");
        let t = Instant::now();
        env.acme_control(
            "PATCH",
            &format!("/appointments/{id}"),
            json!({ "title": title }),
        )
        .await
        .unwrap();
        loop {
            let a = http("GET", &event_url, &[], None).await.unwrap();
            if a.status == 200 && a.text.contains(&format!("SUMMARY:{title}")) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "change {n} did not arrive ({} {})",
                a.status,
                event_url
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    took.sort();
    let q = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "change → calendar by webhook, {} changes: p50 {:.0?}, p90 {:.0?}, p99 {:.0?}, max {:.0?}",
        took.len(),
        q(0.50),
        q(0.90),
        q(0.99),
        took[took.len() - 1]
    );
    let _ = stop.send(());
    let _ = service.await;
}
