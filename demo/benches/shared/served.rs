//! `weft serve` in a process of its own, for benches: started over a
//! `weft.toml` (with `service.listen` on a port the OS picks), its address
//! read from the line it prints first, the runs it reports counted as they
//! end, its CPU and memory read from `/proc`. A bench that includes it
//! includes `proc_stat.rs` beside it too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operator token benches call the admin API with.
pub const TOKEN: &str = "bench-operator-token";

/// The key that seals secrets written over the API (32 bytes, base64).
const SEALING_KEY: &str = "c3RlYWR5LWJlbmNoLXNlYWxpbmcta2V5LTMyLWJ5dGU=";

/// The release `weft` beside the bench's binary (`make bench` builds it),
/// or `None` after saying that `what` is skipped without it.
pub fn release_weft(what: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let weft = exe.parent().unwrap().parent().unwrap().join("weft");
    if weft.exists() {
        return Some(weft);
    }
    println!(
        "{what}: skipped ({} is missing: cargo build --release -p weft-host --bin weft)",
        weft.display()
    );
    None
}

/// Registers `components` in the state `config` names.
pub fn add_connectors(weft: &Path, config: &Path, components: &[&str]) {
    for component in components {
        let out = Command::new(weft)
            .arg("-c")
            .arg(config)
            .args(["connectors", "add", component])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "connectors add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What the service's run lines said so far.
#[derive(Default)]
pub struct Ended {
    /// Runs that succeeded.
    pub succeeded: AtomicU64,
    /// Records those runs fetched.
    pub fetched: AtomicU64,
    /// When the last one ended.
    pub last: Mutex<Option<Instant>>,
}

/// One `weft serve`, killed when dropped.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What its run lines said.
    pub ended: Arc<Ended>,
}

impl Served {
    /// Starts `weft -c config serve` and waits for its address.
    pub fn start(weft: &Path, config: &Path) -> Served {
        let mut child = Command::new(weft)
            .arg("-c")
            .arg(config)
            .arg("serve")
            .env("WEFT_ADMIN_TOKEN", TOKEN)
            .env("WEFT_SECRET_KEY", SEALING_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("weft serve exited").unwrap();
            if let Some(url) = line.strip_prefix("weft serve: listening on ") {
                break url.to_owned();
            }
        };
        let ended = Arc::new(Ended::default());
        let counts = ended.clone();
        // "t00001/appointments: succeeded in 0.1s: 1 pages, 100 fetched, …"
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if !line.contains(": succeeded in ") {
                    continue;
                }
                let fetched = line
                    .split(", ")
                    .find_map(|part| part.strip_suffix(" fetched"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                counts.fetched.fetch_add(fetched, Ordering::Relaxed);
                counts.succeeded.fetch_add(1, Ordering::Relaxed);
                *counts.last.lock().unwrap() = Some(Instant::now());
            }
        });
        Served { child, url, ended }
    }

    /// Calls the admin API as the operator.
    pub async fn call(&self, method: &str, path: &str) -> anyhow::Result<weft_demo::Answer> {
        weft_demo::http(
            method,
            &format!("{}{path}", self.url),
            &[("authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
        .await
    }

    /// Returns once `/readyz` answers `200`.
    pub async fn ready(&self) {
        while !self
            .call("GET", "/readyz")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs that succeeded so far.
    pub fn succeeded(&self) -> u64 {
        self.ended.succeeded.load(Ordering::Relaxed)
    }

    /// Its CPU so far (user + system).
    pub fn cpu(&self) -> Duration {
        super::proc_stat::proc_cpu(
            &std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default(),
        )
    }

    /// A `kB` field of its `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn kib(&self, field: &str) -> u64 {
        super::proc_stat::status_kib(self.child.id(), field).unwrap_or(0)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
