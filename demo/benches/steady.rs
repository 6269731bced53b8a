//! `make bench`: one `weft serve` carrying many tenants in steady state
//! (issue 22's targets for one replica). 10,000 tenants
//! (`WEFT_BENCH_TENANTS`) of two flows each, the test source's 20 records
//! into a destination that discards them, on 5-minute schedules
//! (`WEFT_BENCH_SCHEDULE_SECS`, 300), with the service's defaults unless
//! `WEFT_BENCH_CONCURRENT` sets `max_concurrent_runs`. The real binary
//! (`target/release/weft`), in a process of its own, watched for two
//! schedule periods (`WEFT_BENCH_ROUNDS`, 2): the first runs read the 20
//! records, the later ones find nothing new.
//!
//! Prints, from `/proc` every 5 s and from the service's `/metrics` at the
//! end: runs ended and CPU per run in each period, RSS when the service
//! answered, after each period and its peak, and the schedule lag (start −
//! due) p50 and p99 as histogram bucket bounds, beside the targets. Asserts
//! nothing but that the runs went (these machines are shared and noisy).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weft_test_artifacts as artifacts;

#[path = "../../host/benches/shared/histogram.rs"]
mod histogram;
#[path = "shared/proc_stat.rs"]
mod proc_stat;
#[path = "shared/served.rs"]
mod served;
use served::Served;

fn main() {
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let tenants = env("WEFT_BENCH_TENANTS", 10_000) as usize;
    let period = Duration::from_secs(env("WEFT_BENCH_SCHEDULE_SECS", 300));
    let rounds = env("WEFT_BENCH_ROUNDS", 2).max(1) as u32;
    let concurrent = std::env::var("WEFT_BENCH_CONCURRENT").ok();
    let Some(weft) = served::release_weft("steady state") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), tenants, period.as_secs(), concurrent.as_deref());
    served::add_connectors(
        &weft,
        &config,
        &[artifacts::TEST_SOURCE, artifacts::TEST_DESTINATION],
    );
    println!(
        "weft serve of {tenants} tenants × 2 flows on {} s schedules, max_concurrent_runs {} ({}; weft.toml {:.1} MB)",
        period.as_secs(),
        concurrent.as_deref().unwrap_or("default"),
        weft.display(),
        std::fs::metadata(&config).unwrap().len() as f64 / 1e6,
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let served = Served::start(&weft, &config);
    rt.block_on(served.ready());
    let ready = started.elapsed();
    let sample = || Sample {
        ended: served.succeeded(),
        cpu: served.cpu(),
        rss_kib: served.kib("VmRSS"),
    };
    let at_ready = sample();
    println!(
        "ready in {:.1} s: RSS {:.0} MiB, peak {:.0} MiB, CPU {:.1} s",
        ready.as_secs_f64(),
        mib(at_ready.rss_kib),
        mib(served.kib("VmHWM")),
        at_ready.cpu.as_secs_f64()
    );
    println!(
        "{:>6} {:>10} {:>8} {:>9}",
        "s", "runs ended", "CPU s", "RSS MiB"
    );
    let mut ends = vec![at_ready];
    let mut next_print = Duration::from_secs(60);
    for round in 1..=rounds {
        while started.elapsed() < ready + period * round {
            std::thread::sleep(Duration::from_secs(5));
            let s = sample();
            if started.elapsed() >= next_print {
                next_print += Duration::from_secs(60);
                println!(
                    "{:>6.0} {:>10} {:>8.1} {:>9.0}",
                    started.elapsed().as_secs_f64(),
                    s.ended,
                    s.cpu.as_secs_f64(),
                    mib(s.rss_kib)
                );
            }
        }
        ends.push(sample());
    }
    let peak = served.kib("VmHWM");
    let text = rt.block_on(served.call("GET", "/metrics")).unwrap().text;
    drop(served);

    for (i, w) in ends.windows(2).enumerate() {
        let runs = w[1].ended - w[0].ended;
        println!(
            "period {}: {runs} runs ended, {:.2} ms of CPU per run; RSS at its end {:.0} MiB",
            i + 1,
            (w[1].cpu - w[0].cpu).as_secs_f64() * 1e3 / runs.max(1) as f64,
            mib(w[1].rss_kib)
        );
    }
    let (n, p50, p99) = histogram::histogram_quantiles(&text, "weft_schedule_lag_seconds");
    let max = histogram::histogram_buckets(&text, "weft_schedule_lag_seconds")
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[1].0)
        .fold(0.0, f64::max);
    println!(
        "schedule lag over {n} scheduled starts: p50 ≤ {p50} s, p99 ≤ {p99} s, max ≤ {max} s (target p99 ≤ 1 s)"
    );
    let target = 100.0 + 15.0 * tenants as f64 / 1000.0;
    println!(
        "peak RSS {:.0} MiB, at the end {:.0} MiB (target ≤ {target:.0} MiB: 100 MiB + 15 MiB per 1,000 tenants); CPU per run with nothing new: target ≤ 5 ms; /metrics {} KB",
        mib(peak),
        mib(ends.last().unwrap().rss_kib),
        text.len() / 1000
    );
    assert!(
        ends.last().unwrap().ended >= tenants as u64 * 2,
        "every flow ran at least once"
    );
}

/// What the bench saw of the service at one moment.
#[derive(Clone, Copy)]
struct Sample {
    ended: u64,
    cpu: Duration,
    rss_kib: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `weft.toml`: `tenants` tenants of two flows each on `period`-second
/// schedules, the service on a port the OS picks.
fn write_config(dir: &Path, tenants: usize, period: u64, concurrent: Option<&str>) -> PathBuf {
    let mut text = String::from("data_dir = \"data\"\n");
    if let Some(n) = concurrent {
        text.push_str(&format!("max_concurrent_runs = {n}\n"));
    }
    text.push_str("[service]\nlisten = \"127.0.0.1:0\"\n");
    for i in 0..tenants {
        for flow in ["a", "b"] {
            text.push_str(&format!(
                "[tenants.t{i:05}.flows.{flow}]\nschedule = \"{period}s\"\nsource = {{ connector = \"test-source@^1\", stream = \"numbers\", config = {{ total = 20 }} }}\ndestination = {{ connector = \"test-destination@^2\", config = {{ url = \"discard:\" }} }}\n"
            ));
        }
    }
    let path = dir.join("weft.toml");
    std::fs::write(&path, text).unwrap();
    path
}
