//! `make bench`: many small tenants syncing at once with `weft run`
//! (issue 22). 1,000 tenants (`WEFT_BENCH_TENANTS`), each with one flow
//! reading an Acme account of 100 appointments (enriched with contact and
//! owner) into a destination that accepts everything, all selected by one
//! `weft run`: the real binary (`target/release/weft`; `make bench` builds
//! it), in a process of its own, each setting into a fresh data directory.
//! Prints wall time, records per second, CPU (user + system) and peak RSS
//! of the `weft` process, and the ratio of records per second with the
//! runtime's default worker threads (four a core) against one worker
//! thread (flows driven from one thread, as `weft run` was). Asserts nothing but that
//! every record arrived (these machines are shared and noisy: compare
//! ratios within one run). `WEFT_BENCH_BASELINE=PATH` adds an earlier
//! `weft` binary's run and the ratio against it. Each setting runs
//! `WEFT_BENCH_REPEAT` times (3), the settings in turn, and the median by
//! wall time is shown.
//!
//! `WEFT_BENCH_STATE=postgres` runs the same first syncs through `weft
//! serve` instead: one replica on sled, then 1, 2 and 3 replicas over one
//! PostgreSQL (see [`replicas`]).
//!
//! The Acme sandbox runs in a child process of this binary
//! (`WEFT_BENCH_ROLE=acme`) without a rate limit; it shares the machine's
//! cores with `weft`, so its CPU is printed too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weft_sandbox::acme::data::Counts;
use weft_sandbox::acme::{AcmeConfig, Faults};

#[path = "shared/acme_child.rs"]
mod acme_child;
#[path = "shared/proc_stat.rs"]
mod proc_stat;
#[path = "shared/served.rs"]
mod served;
use acme_child::Acme;
use served::Served;
use weft_test_artifacts as artifacts;

/// jemalloc, as every weft binary (see [`weft::Allocator`]): here it is the
/// Acme child's, which shares the two cores with `weft`.
#[global_allocator]
static ALLOC: weft::Allocator = weft::Allocator;

const APPOINTMENTS: usize = 100;

fn main() {
    if std::env::var("WEFT_BENCH_ROLE").as_deref() == Ok("acme") {
        return serve_acme();
    }
    let tenants: usize = std::env::var("WEFT_BENCH_TENANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let Some(weft) = served::release_weft("many tenants") else {
        return;
    };
    let acme = Acme::start();
    if std::env::var("WEFT_BENCH_STATE").as_deref() == Ok("postgres") {
        return replicas(&weft, &acme, tenants);
    }
    println!(
        "weft run of {tenants} tenants at once, {APPOINTMENTS} appointments each ({})",
        weft.display()
    );
    println!(
        "{:<44} {:>7} {:>10} {:>7} {:>6} {:>10} {:>8}",
        "setting", "wall s", "records/s", "CPU s", "CPU %", "peak RSS", "Acme CPU"
    );
    // (label, worker threads, runs at once, binary); the baseline, when
    // asked for, with its defaults (4 runs at once).
    let mut settings: Vec<(&str, Option<usize>, usize, PathBuf)> = vec![
        ("1 worker thread, 4 runs at once", Some(1), 4, weft.clone()),
        ("default worker threads, 4 at once", None, 4, weft.clone()),
        (
            "1 worker thread, 16 runs at once",
            Some(1),
            16,
            weft.clone(),
        ),
        ("default worker threads, 16 at once", None, 16, weft.clone()),
    ];
    // `WEFT_BENCH_BASELINE=/path/to/weft`: an earlier build on the same
    // tenants and Acme.
    if let Some(old) = std::env::var_os("WEFT_BENCH_BASELINE") {
        settings.push(("baseline build, 4 at once", None, 4, PathBuf::from(old)));
    }
    // Rounds of every setting in turn (`WEFT_BENCH_REPEAT`, 3): the disk
    // and cores drift by a third between runs, so each row is the median
    // round by wall time, and the settings of a round run side by side.
    let rounds: usize = std::env::var("WEFT_BENCH_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut runs: Vec<Vec<Measured>> = settings.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, workers, concurrent, bin)) in settings.iter().enumerate() {
            runs[i].push(measure(bin, &acme, tenants, *workers, *concurrent));
        }
    }
    let mut rates = Vec::new();
    for ((label, ..), mut ms) in settings.iter().zip(runs) {
        ms.sort_by_key(|m| m.wall);
        let walls = (
            ms[0].wall.as_secs_f64(),
            ms[ms.len() - 1].wall.as_secs_f64(),
        );
        let m = &ms[ms.len() / 2];
        println!(
            "{label:<44} {:>7.2} {:>10.0} {:>7.2} {:>5.0}% {:>6.1} MiB {:>7.2}s  (wall {:.2}–{:.2} s)",
            m.wall.as_secs_f64(),
            m.records as f64 / m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.cpu.as_secs_f64() * 100.0 / m.wall.as_secs_f64(),
            m.peak_rss_kib as f64 / 1024.0,
            m.acme_cpu.as_secs_f64(),
            walls.0,
            walls.1,
        );
        rates.push(m.records as f64 / m.wall.as_secs_f64());
    }
    println!(
        "records/s, default worker threads against one: {:.2}× (4 at once), {:.2}× (16 at once)",
        rates[1] / rates[0],
        rates[3] / rates[2]
    );
    if let Some(base) = rates.get(4) {
        println!(
            "records/s against the baseline: {:.2}× (4 at once), {:.2}× (16 at once, the default)",
            rates[1] / base,
            rates[3] / base
        );
    }
    println!("(median of {rounds} rounds, the settings in turn in each)");
}

/// The child: an Acme sandbox of one small account without a rate limit,
/// until stdin closes.
fn serve_acme() {
    acme_child::serve(AcmeConfig {
        counts: Counts {
            users: 5,
            contacts: 40,
            appointments: APPOINTMENTS,
            activities: 0,
        },
        faults: Faults {
            rate_per_second: 1e9,
            rate_burst: 1_000_000_000,
            ..Faults::default()
        },
        ..AcmeConfig::default()
    });
}

struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    records: u64,
    acme_cpu: Duration,
}

/// Registers the bench's connectors in the state `config` names.
fn add_connectors(weft: &Path, config: &Path) {
    served::add_connectors(
        weft,
        config,
        &[artifacts::ACME_CRM, artifacts::TEST_DESTINATION],
    );
}

/// One `weft run` of every tenant into a fresh data directory.
fn measure(
    weft: &Path,
    acme: &Acme,
    tenants: usize,
    workers: Option<usize>,
    concurrent: usize,
) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &acme.root, tenants, concurrent, "", "");
    add_connectors(weft, &config);
    let mut cmd = Command::new(weft);
    cmd.args(["-c", config.to_str().unwrap(), "run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(n) = workers {
        cmd.env("TOKIO_WORKER_THREADS", n.to_string());
    }
    let acme_before = acme.cpu();
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    // Peak RSS: the kernel's high-water mark, read until the process is
    // gone (a zombie has no memory left to report).
    let peak = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Some(kib) = proc_stat::status_kib(pid, "VmHWM") {
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kib
    });
    let (mut records, mut runs) = (0u64, 0usize);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // "t00001/appointments: succeeded in 0.1s: 1 pages, 100 fetched, …"
        if let Some(n) = line
            .split(", ")
            .find_map(|part| part.strip_suffix(" fetched"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            assert!(line.contains(": succeeded in "), "{line}");
            records += n;
            runs += 1;
        }
    }
    // Its output closed: it is exiting. Its CPU, read before it is waited
    // for (a zombie's counters are whole).
    let mut cpu = Duration::ZERO;
    while std::fs::metadata(format!("/proc/{pid}")).is_ok() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        cpu = cpu.max(proc_stat::proc_cpu(&stat));
        if stat.contains(") Z ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    let wall = started.elapsed();
    assert!(status.success(), "weft run exited with {status}");
    assert_eq!(runs, tenants, "every tenant's run reported");
    assert_eq!(records, (tenants * APPOINTMENTS) as u64, "every record");
    Measured {
        wall,
        cpu,
        peak_rss_kib: peak.join().unwrap(),
        records,
        acme_cpu: acme.cpu() - acme_before,
    }
}

/// `weft.toml` with `tenants` tenants of one flow each, and its secrets;
/// `flow` is added to each flow's table, `tail` (tables) at the end.
fn write_config(
    dir: &Path,
    acme_root: &str,
    tenants: usize,
    concurrent: usize,
    flow: &str,
    tail: &str,
) -> PathBuf {
    let base = format!("{acme_root}/api/v1");
    let mut text = format!(
        "data_dir = \"data\"\nsecrets_file = \"secrets.toml\"\nprivate_hosts = [\"127.0.0.1\"]\n\
         max_concurrent_runs = {concurrent}\n\
         default_rate = {{ per_second = 1000000000.0, burst = 1000000000 }}\n"
    );
    for i in 0..tenants {
        text.push_str(&format!(
            r#"
[tenants.t{i:05}.flows.appointments]
{flow}source = {{ connector = "acme-crm@^1", stream = "appointments", config = {{ base_url = "{base}", page_size = 100 }}, http = {{ allow = ["{acme_root}"], credentials = [{{ origin = "{acme_root}", auth = {{ type = "api_key", header = "X-Acme-Api-Key", value = {{ secret = "key" }} }} }}] }} }}
destination = {{ connector = "test-destination@^2", config = {{ url = "discard:" }} }}
"#
        ));
    }
    text.push_str(tail);
    std::fs::write(dir.join("secrets.toml"), "key = \"acme-demo-key\"\n").unwrap();
    let path = dir.join("weft.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What the replicas did with every tenant's first sync.
struct Replicated {
    wall: Duration,
    records: u64,
    /// Per replica: runs, CPU, peak RSS (KiB).
    each: Vec<(u64, Duration, u64)>,
    server_cpu: Duration,
    acme_cpu: Duration,
}

/// `WEFT_BENCH_STATE=postgres`: the same first syncs through `weft serve`
/// instead of `weft run`: one replica on sled, then 1, 2 and 3 replicas
/// (`WEFT_BENCH_REPLICAS`) over one PostgreSQL of the bench's own (durable
/// settings, a fresh database each). Every tenant's flow is asked to run
/// over the admin API, round-robin across the replicas as a load balancer
/// would, and the clock stops when the last run has ended. The replicas
/// share these two cores: this says what the shared state costs and that
/// the work spreads, not that a machine grows.
fn replicas(weft: &Path, acme: &Acme, tenants: usize) {
    // `WEFT_BENCH_PG_STATS=1`: also print the statements that took the
    // server's time in each database (pg_stat_statements).
    let (pg, stats) = match weft_test_pg::Postgres::for_bench() {
        Ok(started) => started,
        Err(e) => {
            println!("replicas: skipped ({e:#})");
            return;
        }
    };
    let counts: Vec<usize> = std::env::var("WEFT_BENCH_REPLICAS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    println!(
        "weft serve of {tenants} tenants, every flow asked to run at once over the admin API, {APPOINTMENTS} appointments each"
    );
    println!(
        "{:<26} {:>7} {:>10} {:>11} {:>15} {:>16} {:>12} {:>9}",
        "state, replicas",
        "wall s",
        "records/s",
        "weft CPU s",
        "peak RSS (max)",
        "runs each",
        "server CPU s",
        "Acme CPU"
    );
    let mut rows = vec![(
        "sled, 1 replica".to_owned(),
        serve_all(weft, acme, tenants, None, 1),
    )];
    for n in counts {
        let db = format!("tenants{n}");
        let url = pg.create_database(&db).unwrap();
        rows.push((
            format!("PostgreSQL, {n} replica(s)"),
            serve_all(weft, acme, tenants, Some((&url, &pg)), n),
        ));
        if stats {
            let top = pg.top_statements(&db, 15);
            println!(
                "{n} replica(s):\n{}",
                top.unwrap_or_else(|e| format!("{e:#}"))
            );
        }
    }
    for (label, r) in rows {
        let cpu: Duration = r.each.iter().map(|e| e.1).sum();
        let peak = r.each.iter().map(|e| e.2).max().unwrap_or(0);
        let runs: Vec<String> = r.each.iter().map(|e| e.0.to_string()).collect();
        println!(
            "{label:<26} {:>7.2} {:>10.0} {:>11.2} {:>11.1} MiB {:>16} {:>12.2} {:>8.2}s",
            r.wall.as_secs_f64(),
            r.records as f64 / r.wall.as_secs_f64(),
            cpu.as_secs_f64(),
            peak as f64 / 1024.0,
            runs.join("+"),
            r.server_cpu.as_secs_f64(),
            r.acme_cpu.as_secs_f64(),
        );
    }
}

/// `n` replicas over one state (`db`: PostgreSQL's URL and server; `None`:
/// sled, one replica), every tenant's flow run once through them.
fn serve_all(
    weft: &Path,
    acme: &Acme,
    tenants: usize,
    db: Option<(&str, &weft_test_pg::Postgres)>,
    n: usize,
) -> Replicated {
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<PathBuf> = (0..n)
        .map(|r| {
            let d = dir.path().join(format!("r{r}"));
            std::fs::create_dir_all(&d).unwrap();
            let mut tail = String::from("\n[service]\nlisten = \"127.0.0.1:0\"\n");
            if let Some((url, _)) = db {
                tail.push_str(&format!(
                    "[state]\nbackend = \"postgres\"\nurl = \"{url}\"\nreplica = \"r{r}\"\n"
                ));
            }
            // No scheduled start in the bench's time: the runs are asked for.
            write_config(
                &d,
                &acme.root,
                tenants,
                16,
                "schedule = \"100000h\"\n",
                &tail,
            )
        })
        .collect();
    add_connectors(weft, &configs[0]);
    // The other replicas find the components in the database; their
    // compiled code is a per-replica cache, filled here as a deployment's
    // would be after its first start.
    let cache = dir.path().join("r0/data/cache");
    for r in 1..n {
        let to = dir.path().join(format!("r{r}/data/cache"));
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&cache).unwrap().flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let served: Vec<Served> = configs.iter().map(|c| Served::start(weft, c)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for s in &served {
            s.ready().await;
        }
    });
    let server_before = db.map_or(Duration::ZERO, |(_, pg)| pg.cpu());
    let acme_before = acme.cpu();
    let cpu_before: Vec<Duration> = served.iter().map(Served::cpu).collect();
    let started = Instant::now();
    rt.block_on(async {
        // 32 requests in flight, as a client with a connection pool would
        // (a connection each for all at once meets the service's limit).
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..tenants {
            let url = format!(
                "{}/v1/tenants/t{i:05}/flows/appointments/runs",
                served[i % n].url
            );
            let slots = slots.clone();
            asked.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                let auth = format!("Bearer {}", served::TOKEN);
                weft_demo::http("POST", &url, &[("authorization", &auth)], None).await
            });
        }
        while let Some(answer) = asked.join_next().await {
            let answer = answer.unwrap().unwrap();
            assert_eq!(answer.status, 202, "{}", answer.text);
        }
    });
    while served.iter().map(Served::succeeded).sum::<u64>() < tenants as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "runs still going after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = served
        .iter()
        .filter_map(|s| *s.ended.last.lock().unwrap())
        .max()
        .unwrap();
    let records = served
        .iter()
        .map(|s| s.ended.fetched.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(records, (tenants * APPOINTMENTS) as u64, "every record");
    Replicated {
        wall: last - started,
        records,
        each: served
            .iter()
            .zip(cpu_before)
            .map(|(s, before)| (s.succeeded(), s.cpu() - before, s.kib("VmHWM")))
            .collect(),
        server_cpu: db.map_or(Duration::ZERO, |(_, pg)| pg.cpu()) - server_before,
        acme_cpu: acme.cpu() - acme_before,
    }
}
