//! `make bench`: the first sync of an Acme account at the size of issue 10
//! (20 users, 2,000 contacts, 20,000 appointments, 50,000 activities) and an
//! incremental one, with no rate limit and at Acme's 10 requests/s (burst
//! 20), plus the demo's full integration. Prints wall time, CPU per record,
//! requests, 429s and peak RSS; asserts nothing (these machines are shared
//! and noisy: compare ratios within one run). The unlimited first sync runs
//! five times (`WEFT_BENCH_REPEAT`) and shows the median with the range;
//! peak RSS is shown for the first run of the process only.
//!
//! The Acme sandbox runs in a child process (this binary with
//! `WEFT_BENCH_ROLE=acme`), so that the CPU and memory measured are weft's
//! alone; so does the compilation of the components into the data
//! directory's cache (`WEFT_BENCH_ROLE=compile`), as with `weft`. The destination accepts everything without a request
//! (`test-destination` with `url = "discard:"`): what is measured is reading
//! Acme, enriching and moving records through the host.

use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};
use weft::Host;
use weft::flow::Trigger;
use weft_sandbox::acme::AcmeConfig;
use weft_sandbox::acme::data::Counts;

#[path = "shared/acme_child.rs"]
mod acme_child;
#[path = "shared/proc_stat.rs"]
mod proc_stat;
use acme_child::Acme;
use weft_test_artifacts as artifacts;

const USERS: usize = 20;
const CONTACTS: usize = 2_000;
const APPOINTMENTS: usize = 20_000;
const ACTIVITIES: usize = 50_000;

/// jemalloc, as every weft binary (see [`weft::Allocator`]).
#[global_allocator]
static ALLOC: weft::Allocator = weft::Allocator;

fn main() {
    match std::env::var("WEFT_BENCH_ROLE").as_deref() {
        Ok("acme") => return serve_acme(),
        Ok("compile") => return compile_components(),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "weft sync benchmark: {USERS} users, {CONTACTS} contacts, {APPOINTMENTS} appointments, {ACTIVITIES} activities"
        );
        println!(
            "{:<34} {:>9} {:>12} {:>9} {:>6} {:>9} {:>12}",
            "run", "wall s", "CPU µs/rec", "requests", "429s", "records", "peak RSS"
        );
        // `WEFT_BENCH_ONLY=first`: the unlimited account alone (for
        // profiling); `=postgres`: its first sync on PostgreSQL alone.
        let only = std::env::var("WEFT_BENCH_ONLY").unwrap_or_default();
        if only == "postgres" {
            bench_postgres().await;
            return;
        }
        let only_first = only == "first";
        for (label, rate) in [
            ("no rate limit", None),
            ("10 req/s burst 20", Some((10.0, 20))),
        ] {
            bench_account(label, rate).await;
            if only_first {
                return;
            }
            if rate.is_none() {
                bench_postgres().await;
            }
        }
        demo_integration().await;
    });
}

/// The child: an Acme sandbox of the benchmark's size, until stdin closes.
fn serve_acme() {
    acme_child::serve(AcmeConfig {
        counts: Counts {
            users: USERS,
            contacts: CONTACTS,
            appointments: APPOINTMENTS,
            activities: ACTIVITIES,
        },
        ..AcmeConfig::default()
    });
}

/// The child that registers the components in the data directory of
/// `WEFT_BENCH_CONFIG`, compiling them into its cache, and exits: the
/// measured process then loads them compiled, as `weft run` does after the
/// first start (the `weft` binary also compiles in a child process), and
/// neither the compiler's memory nor its code is in its RSS.
fn compile_components() {
    let path = std::env::var("WEFT_BENCH_CONFIG").expect("WEFT_BENCH_CONFIG");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = Host::open(weft::config::WeftConfig::load(path.as_ref()).unwrap()).unwrap();
        for f in [artifacts::ACME_CRM, artifacts::TEST_DESTINATION] {
            host.registry.add(&host.runtime, f.as_ref()).await.unwrap();
        }
    });
}

impl Acme {
    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let a = weft_demo::http(
            method,
            &format!("{}/_sandbox{path}", self.root),
            &[],
            body.map(|b| ("application/json", b.to_string())),
        )
        .await
        .unwrap();
        serde_json::from_str(&a.text).unwrap_or(Value::Null)
    }

    /// (requests, 429s) since the log was last cleared; clears it.
    async fn requests(&self) -> (usize, usize) {
        let log = self.control("GET", "/requests", None).await;
        let all = log.as_array().cloned().unwrap_or_default();
        self.control("DELETE", "/requests", None).await;
        let limited = all.iter().filter(|r| r["status"] == 429).count();
        (all.len(), limited)
    }

    /// The IDs of the first `n` records of an Acme list (waiting out the
    /// rate limit the sync may have left).
    async fn first_ids(&self, resource: &str, n: usize) -> Vec<String> {
        let a = loop {
            let a = weft_demo::http(
                "GET",
                &format!("{}/api/v1/{resource}?limit={n}", self.root),
                &[("x-acme-api-key", "acme-demo-key")],
                None,
            )
            .await
            .unwrap();
            if a.status != 429 {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let v: Value = serde_json::from_str(&a.text).unwrap_or(Value::Null);
        v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// This process's user + system CPU time (Linux `/proc/self/stat`).
fn cpu() -> Duration {
    proc_stat::proc_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// Resets the peak RSS (Linux: `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    proc_stat::status_kib(std::process::id(), "VmHWM").unwrap_or(0) as f64 / 1024.0
}

/// The unlimited first sync again with the state in PostgreSQL (a server
/// of its own on this machine, durable settings, a new database each run):
/// weft's CPU per record, and the server's.
async fn bench_postgres() {
    // `WEFT_BENCH_PG_STATS=1`: also print the statements that took the
    // server's time (pg_stat_statements).
    let (pg, stats) = match weft_test_pg::Postgres::for_bench() {
        Ok(started) => started,
        Err(e) => {
            println!("first sync, PostgreSQL: skipped ({e:#})");
            return;
        }
    };
    let acme = Acme::start();
    acme.control(
        "PUT",
        "/faults",
        Some(json!({ "rate_per_second": 1e9, "rate_burst": 1_000_000_000u32 })),
    )
    .await;
    let repeat = std::env::var("WEFT_BENCH_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    // (wall, weft CPU, server CPU, records), sorted by weft's CPU.
    let mut runs = Vec::new();
    for i in 0..repeat {
        let url = pg.create_database(&format!("bench{i}")).unwrap();
        let (_dir, host) = open_host_on(&acme.root, None, None, Some(&url)).await;
        let server = pg.cpu();
        let (wall, cpu_used, records) = sync(&host).await;
        runs.push((wall, cpu_used, pg.cpu() - server, records));
    }
    if stats {
        let top = pg.top_statements("bench0", 12);
        println!("{}", top.unwrap_or_else(|e| format!("{e:#}")));
    }
    runs.sort_by_key(|r| r.1);
    let (wall, cpu_used, server, records) = runs[runs.len() / 2];
    row(
        "first sync, no limit, PostgreSQL",
        (wall, cpu_used, records),
        (0, 0),
        None,
    );
    println!(
        "  (median of {repeat}; PostgreSQL server CPU {:.1} µs/record; requests not counted)",
        server.as_secs_f64() * 1e6 / records.max(1) as f64
    );
}

fn config(dir: &std::path::Path, acme_root: &str, rate: Option<(f64, u32)>) -> String {
    let (per_second, burst) = rate.unwrap_or((1e9, 1_000_000_000));
    let base = format!("{acme_root}/api/v1");
    let flow = |stream: &str| {
        format!(
            r#"
[tenants.bench.flows.{stream}]
source = {{ connector = "acme-crm@^1", stream = "{stream}", config = {{ base_url = "{base}", page_size = 200 }}, http = {{ allow = ["{acme_root}"], credentials = [{{ origin = "{acme_root}", auth = {{ type = "api_key", header = "X-Acme-Api-Key", value = {{ secret = "key" }} }} }}] }} }}
destination = {{ connector = "test-destination@^2", config = {{ url = "discard:" }} }}
"#
        )
    };
    format!(
        "data_dir = {:?}\nsecrets_file = \"secrets.toml\"\nprivate_hosts = [\"127.0.0.1\"]\ndefault_rate = {{ per_second = {per_second:.1}, burst = {burst} }}\n[limits]\ncall_timeout_ms = 60000\n{}{}",
        dir.join("data"),
        flow("appointments"),
        flow("activities"),
    )
}

/// Both flows of the tenant, concurrently; returns (wall, CPU, records).
async fn sync(host: &Host) -> (Duration, Duration, u64) {
    reset_peak_rss();
    let (t, c) = (Instant::now(), cpu());
    let (a, b) = tokio::join!(
        host.run_flow("bench", "appointments", Trigger::Manual, &|_| {}),
        host.run_flow("bench", "activities", Trigger::Manual, &|_| {}),
    );
    let (wall, cpu_used) = (t.elapsed(), cpu() - c);
    let mut records = 0;
    for r in [a.unwrap(), b.unwrap()] {
        weft_demo::assert_succeeded(&r);
        records += r.fetched;
    }
    (wall, cpu_used, records)
}

/// One measured first sync: (wall, CPU, records), (requests, 429s).
type FirstSync = ((Duration, Duration, u64), (usize, usize));

fn row(
    label: &str,
    measured: (Duration, Duration, u64),
    requests: (usize, usize),
    rss_mib: Option<f64>,
) {
    let (wall, cpu_used, records) = measured;
    let per_record = cpu_used.as_secs_f64() * 1e6 / records.max(1) as f64;
    println!(
        "{label:<34} {:>9.2} {per_record:>12.1} {:>9} {:>6} {records:>9} {:>12}",
        wall.as_secs_f64(),
        requests.0,
        requests.1,
        rss_mib.map_or("—".to_owned(), |m| format!("{m:.1} MiB"))
    );
}

async fn bench_account(label: &str, rate: Option<(f64, u32)>) {
    let acme = Acme::start();
    if rate.is_none() {
        acme.control(
            "PUT",
            "/faults",
            Some(json!({ "rate_per_second": 1e9, "rate_burst": 1_000_000_000u32 })),
        )
        .await;
    }
    // The machine is shared and noisy: without a rate limit, the first
    // sync is measured `WEFT_BENCH_REPEAT` times (5 unless set), each into
    // a data directory of its own, and the median is shown with the range.
    let repeat = if rate.is_none() {
        std::env::var("WEFT_BENCH_REPEAT")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5usize)
            .max(1)
    } else {
        1
    };
    let mut firsts: Vec<FirstSync> = Vec::new();
    // Peak RSS of the first run only (the unlimited account's runs come
    // first in the process): later ones start with what the allocator kept
    // of the runs before.
    let mut first_rss = None;
    let mut kept = None;
    for _ in 0..repeat {
        let cache = kept
            .as_ref()
            .map(|(d, _): &(tempfile::TempDir, Host)| d.path().join("data/cache"));
        let (dir, host) = open_host(&acme.root, rate, cache.as_deref()).await;
        acme.requests().await;
        let first = sync(&host).await;
        first_rss.get_or_insert_with(peak_rss_mib);
        firsts.push((first, acme.requests().await));
        kept = Some((dir, host));
    }
    let (_dir, host) = kept.expect("at least one run");
    let per_record = |f: &FirstSync| f.0.1.as_secs_f64() * 1e6 / f.0.2.max(1) as f64;
    let mut order: Vec<usize> = (0..firsts.len()).collect();
    order.sort_by(|&a, &b| per_record(&firsts[a]).total_cmp(&per_record(&firsts[b])));
    let median = &firsts[order[order.len() / 2]];
    row(
        &format!("first sync, {label}"),
        median.0,
        median.1,
        // Only a process that ran nothing before shows its own peak.
        first_rss.filter(|_| rate.is_none()),
    );
    if firsts.len() > 1 {
        let walls = firsts.iter().map(|f| f.0.0.as_secs_f64());
        let (wmin, wmax) = walls.fold((f64::MAX, 0f64), |(lo, hi), w| (lo.min(w), hi.max(w)));
        println!(
            "  (median of {} runs; CPU {:.1}–{:.1} µs/record, wall {wmin:.2}–{wmax:.2} s)",
            firsts.len(),
            per_record(&firsts[order[0]]),
            per_record(&firsts[order[order.len() - 1]]),
        );
    }
    // An incremental sync after 50 appointments and 50 activities changed.
    for (resource, field) in [("appointments", "title"), ("activities", "subject")] {
        for id in acme.first_ids(resource, 50).await {
            let path = format!("/{resource}/{id}");
            acme.control("PATCH", &path, Some(json!({ (field): "changed" })))
                .await;
        }
    }
    acme.requests().await;
    let again = sync(&host).await;
    row(
        &format!("incremental, {label}"),
        again,
        acme.requests().await,
        None,
    );
}

/// A host with the benchmark's tenant in a new data directory, its
/// components compiled by a child process (into a copy of `cache` when
/// given, so that nothing is compiled again).
async fn open_host(
    acme_root: &str,
    rate: Option<(f64, u32)>,
    cache: Option<&std::path::Path>,
) -> (tempfile::TempDir, Host) {
    open_host_on(acme_root, rate, cache, None).await
}

/// [`open_host`], with the state in the PostgreSQL database at `state_url`
/// when given.
async fn open_host_on(
    acme_root: &str,
    rate: Option<(f64, u32)>,
    cache: Option<&std::path::Path>,
    state_url: Option<&str>,
) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secrets.toml"), "key = \"acme-demo-key\"\n").unwrap();
    let path = dir.path().join("weft.toml");
    let mut text = config(dir.path(), acme_root, rate);
    if let Some(url) = state_url {
        text.push_str(&format!(
            "\n[state]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    if let Some(cache) = cache {
        let to = dir.path().join("data/cache");
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(cache).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let compiled = Command::new(std::env::current_exe().unwrap())
        .env("WEFT_BENCH_ROLE", "compile")
        .env("WEFT_BENCH_CONFIG", &path)
        .status()
        .unwrap();
    assert!(compiled.success(), "compiling the components failed");
    let host = Host::open(weft::config::WeftConfig::load(&path).unwrap()).unwrap();
    for f in [artifacts::ACME_CRM, artifacts::TEST_DESTINATION] {
        // Registered already, and compiled: loaded from the cache.
        host.registry.add(&host.runtime, f.as_ref()).await.unwrap();
    }
    (dir, host)
}

/// The demo's integration (300 appointments, 500 activities, a flaky Acme,
/// Radicale and the dashboard): the first sync of all three flows.
async fn demo_integration() {
    let acme = AcmeConfig {
        counts: Counts {
            users: 4,
            contacts: 80,
            appointments: 300,
            activities: 500,
        },
        faults: weft_sandbox::acme::Faults {
            error_503: 0.03,
            malformed_json: 0.02,
            ..Default::default()
        },
        ..AcmeConfig::default()
    };
    let env = weft_demo::DemoEnv::start(acme, vec![weft_demo::TenantSetup::new("northwind")])
        .await
        .unwrap();
    let t = Instant::now();
    let runs = env.sync("northwind").await.unwrap();
    let wall = t.elapsed();
    let emitted: u64 = runs.iter().map(|r| r.emitted).sum();
    println!(
        "demo integration, first sync: {:.2} s for {emitted} events and touch-points into Radicale and the dashboard",
        wall.as_secs_f64()
    );
}
