//! Issue 19's proof: the real `weft serve` binary, in a process of its own,
//! takes Acme's webhooks (signed, duplicated, reordered, dropped, retried)
//! beside polls every few seconds and manual runs at random, and is killed
//! with `kill -9` at random moments and restarted, while Acme's users
//! reassign and move appointments, change, cancel and delete them, change
//! and delete customers, and log, change and delete activities. At the end:
//!
//! - the calendars and the dashboard equal what Acme says
//!   ([`DemoEnv::check_against_acme_last_known`]), with no UID under two
//!   resource names (nothing delivered twice in effect);
//! - a tenant activated only at the end, over the same Acme, shows the same
//!   calendars, event by event and line by line, and the same dashboard;
//! - no two runs writing one place overlapped (one flow, or the two flows
//!   that write the calendars), whatever started them.
//!
//! The random choices come from `WEFT_CHAOS_SEED` (printed; set it to
//! replay a failure); `WEFT_CHAOS_SECS` sets how long the storm lasts.

use crate::support::{OPERATOR, acme_with, api, free_port, last_known};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use weft_demo::DemoEnv;
use weft_sandbox::acme::{AcmeConfig, Faults};

pub(crate) const FLOWS: [&str; 3] = ["appointments", "contacts", "touchpoints"];

/// `weft serve` in a child process over `serve.toml`.
pub(crate) struct Weft {
    pub(crate) child: Option<Child>,
    pub(crate) url: String,
    config: PathBuf,
    log: PathBuf,
}

impl Weft {
    /// The `weft` binary next to this test's directory (`target/debug`):
    /// `cargo nextest run --workspace` builds it for the host's tests.
    fn binary() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap().join("weft");
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p weft-host --bin weft`",
            bin.display()
        );
        bin
    }

    fn command(config: &Path) -> Command {
        let mut c = Command::new(Self::binary());
        c.arg("--config").arg(config);
        c.env("WEFT_ADMIN_TOKEN", OPERATOR).env("WEFT_LOG", "info");
        c
    }

    pub(crate) async fn start(config: PathBuf, url: String, log: PathBuf) -> Weft {
        let mut w = Weft {
            child: None,
            url,
            config,
            log,
        };
        w.restart().await;
        w
    }

    pub(crate) async fn restart(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Self::command(&self.config)
            .arg("serve")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        loop {
            if let Ok((200, _)) = api(&self.url, None, "GET", "/openapi.json", None).await {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weft serve exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "weft serve did not answer:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        api(&self.url, Some(OPERATOR), method, path, body)
            .await
            .unwrap()
    }

    /// Queues a run of `tenant`'s `flow` over the admin API.
    pub(crate) async fn queue_run(&self, tenant: &str, flow: &str) -> (u16, Value) {
        let path = format!("/v1/tenants/{tenant}/flows/{flow}/runs");
        self.call("POST", &path, Some(json!({}))).await
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The demo's configuration for `weft serve`: its own data directory,
/// every flow polled every `schedule`, `t2` inactive until the end.
fn serve_config(env: &DemoEnv, port: u16, schedule: &str) -> String {
    serve_config_in(env, "serve-data", port, schedule)
}

/// [`serve_config`] with the data directory `data_dir`.
pub(crate) fn serve_config_in(env: &DemoEnv, data_dir: &str, port: u16, schedule: &str) -> String {
    let text = weft_demo::config_toml(
        data_dir,
        &env.acme.base_url(),
        &env.dashboard.url(),
        &env.radicale.url(),
        &env.tenants,
        None,
    );
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("schedule = ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "[service]" {
            out.push_str(&format!("listen = \"127.0.0.1:{port}\"\n"));
        }
        if line.starts_with("[tenants.") && line.contains(".flows.") {
            out.push_str(&format!("schedule = \"{schedule}\"\n"));
        }
    }
    out.push_str("\n[tenants.t2]\nactive = false\n");
    out
}

/// Copies the compiled components of the demo's host, so that the child
/// does not compile them again, and registers them in its state.
fn prepare_state(env: &DemoEnv, config: &Path) {
    copy_compiled(env, "serve-data");
    for file in weft_demo::COMPONENTS {
        let out = Weft::command(config)
            .args(["connectors", "add"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "connectors add {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Copies the compiled components of the demo's host into `data_dir`'s
/// cache, so that a child does not compile them again.
pub(crate) fn copy_compiled(env: &DemoEnv, data_dir: &str) {
    let from = env.dir.path().join("data").join("cache");
    let to = env.dir.path().join(data_dir).join("cache");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The live IDs of an Acme resource.
async fn live(env: &DemoEnv, resource: &str) -> Vec<String> {
    env.list_all(resource)
        .await
        .unwrap()
        .iter()
        .filter(|r| r["deleted_at"].is_null())
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

fn pick<'a>(rng: &mut StdRng, from: &'a [String]) -> Option<&'a String> {
    (!from.is_empty()).then(|| &from[rng.random_range(0..from.len())])
}

/// What Acme's users do: one random change.
pub(crate) struct World {
    users: Vec<String>,
    contacts: Vec<String>,
    appointments: Vec<String>,
    activities: Vec<String>,
    deleted_contacts: usize,
}

impl World {
    pub(crate) async fn read(env: &DemoEnv) -> World {
        let users = env.acme_get("/users").await.unwrap()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        World {
            users,
            contacts: live(env, "contacts").await,
            appointments: live(env, "appointments").await,
            activities: live(env, "activities").await,
            deleted_contacts: 0,
        }
    }

    pub(crate) async fn change(&mut self, env: &DemoEnv, rng: &mut StdRng) {
        let user = pick(rng, &self.users).cloned();
        let contact = pick(rng, &self.contacts).cloned();
        let apt = pick(rng, &self.appointments).cloned();
        let act = pick(rng, &self.activities).cloned();
        let day = rng.random_range(1..28);
        let hour = rng.random_range(7..19);
        let n: u32 = rng.random_range(0..1000);
        let (method, path, body) = match rng.random_range(0..100) {
            0..25 => (
                "PATCH",
                format!("/appointments/{}", apt.unwrap()),
                json!({ "owner_id": user }),
            ),
            25..40 => (
                "PATCH",
                format!("/appointments/{}", apt.unwrap()),
                json!({
                    "starts_at": format!("2027-01-{day:02}T{hour:02}:00:00-05:00"),
                    "ends_at": format!("2027-01-{day:02}T{hour:02}:45:00-05:00"),
                    "title": format!("Meeting {n}"),
                }),
            ),
            40..55 => (
                "PATCH",
                format!("/contacts/{}", contact.unwrap()),
                json!({ "phone": format!("+1 312 555 {n:04}"), "first_name": format!("Name{n}") }),
            ),
            55..63 => {
                let status = ["scheduled", "cancelled", "completed"][rng.random_range(0..3)];
                (
                    "PATCH",
                    format!("/appointments/{}", apt.unwrap()),
                    json!({ "status": status }),
                )
            }
            63..73 => (
                "POST",
                "/appointments".to_owned(),
                json!({
                    "owner_id": user, "contact_id": contact, "title": format!("New {n}"),
                    "starts_at": format!("2027-02-{day:02}T{hour:02}:30:00Z"), "ends_at": null,
                    "timezone": "UTC",
                }),
            ),
            73..76 => (
                "DELETE",
                format!("/appointments/{}", apt.unwrap()),
                json!({}),
            ),
            76..79 if self.deleted_contacts < 4 && self.contacts.len() > 5 => {
                self.deleted_contacts += 1;
                (
                    "DELETE",
                    format!("/contacts/{}", contact.unwrap()),
                    json!({}),
                )
            }
            79..88 => (
                "POST",
                "/activities".to_owned(),
                json!({
                    "type": if n.is_multiple_of(2) { "email" } else { "call" }, "direction": "outbound",
                    "owner_id": user, "contact_id": contact,
                    "occurred_at": format!("2027-01-{day:02}T{hour:02}:10:00Z"),
                }),
            ),
            88..94 => {
                let kind = ["email", "call", "meeting"][rng.random_range(0..3)];
                (
                    "PATCH",
                    format!("/activities/{}", act.unwrap()),
                    json!({ "owner_id": user, "type": kind }),
                )
            }
            _ => ("DELETE", format!("/activities/{}", act.unwrap()), json!({})),
        };
        let v = env.acme_control(method, &path, body).await.unwrap();
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        match (method, path.as_str()) {
            ("POST", "/appointments") => self.appointments.push(id),
            ("POST", "/activities") => self.activities.push(id),
            ("DELETE", p) if p.starts_with("/appointments/") => {
                self.appointments.retain(|a| *a != id)
            }
            ("DELETE", p) if p.starts_with("/contacts/") => self.contacts.retain(|c| *c != id),
            ("DELETE", p) if p.starts_with("/activities/") => self.activities.retain(|a| *a != id),
            _ => {}
        }
    }
}

/// Subscribes every flow of `tenant` at Acme (`webhook.register`).
pub(crate) async fn subscribe(weft: &Weft, tenant: &str) {
    let (s, mut t) = weft
        .call("GET", &format!("/v1/tenants/{tenant}"), None)
        .await;
    assert_eq!(s, 200, "{t}");
    for flow in FLOWS {
        t["flows"][flow]["source"]["webhook"] = json!({ "register": true });
    }
    let (s, v) = weft
        .call("PUT", &format!("/v1/tenants/{tenant}"), Some(t))
        .await;
    assert_eq!(s, 200, "{v}");
}

/// `tenant`'s runs, oldest first.
pub(crate) async fn runs(weft: &Weft, tenant: &str) -> Vec<Value> {
    let (s, v) = weft
        .call(
            "GET",
            &format!("/v1/runs?tenant={tenant}&limit=100000"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut runs = v.as_array().unwrap().clone();
    runs.sort_by_key(|r| r["started_ms"].as_u64().unwrap_or(0));
    runs
}

/// Queues one run of every flow of `tenant` and waits until a run of each
/// that started after now has ended.
pub(crate) async fn run_all_and_wait(weft: &Weft, tenant: &str) {
    let since = now_ms();
    for flow in FLOWS {
        let (s, v) = weft.queue_run(tenant, flow).await;
        assert!(s == 202 || s == 200, "{s} {v}");
    }
    let t = Instant::now();
    loop {
        let runs = runs(weft, tenant).await;
        let done = FLOWS.iter().all(|f| {
            runs.iter().any(|r| {
                r["flow"] == *f
                    && r["started_ms"].as_u64().unwrap_or(0) >= since
                    && r["outcome"] != "running"
            })
        });
        if done {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{tenant}: runs did not end: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Asserts that `t1` is what Acme says.
pub(crate) fn assert_exact(exact: &weft_demo::Exactness) {
    assert!(
        exact.differences.is_empty(),
        "t1 differs from Acme ({} events, {} touch-points expected): {:#?}",
        exact.events,
        exact.touchpoints,
        exact.differences
    );
}

/// Lets Acme deliver what it still has, runs every flow of `t1` once more
/// through `weft`, and compares the calendars and the dashboard with Acme
/// (again for up to 30 s while they differ).
pub(crate) async fn settle(env: &DemoEnv, weft: &Weft) -> weft_demo::Exactness {
    let t = Instant::now();
    while env.acme.pending_deliveries() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "Acme still delivering"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run_all_and_wait(weft, "t1").await;
    let t = Instant::now();
    loop {
        let e = env.check_against_acme_last_known("t1").await.unwrap();
        if e.differences.is_empty() || t.elapsed() > Duration::from_secs(30) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The place a flow writes: `appointments` and `contacts` write the
/// calendars, `touchpoints` the dashboard.
fn writes(flow: &str) -> &'static str {
    if flow == "touchpoints" {
        "dashboard"
    } else {
        "calendars"
    }
}

/// Every pair of runs writing one place (one flow, or two flows with one
/// destination) that overlapped in time. A run cut short by a kill ends at
/// that kill (its record is closed at the next start).
pub(crate) fn overlaps(runs: &[Value], kills: &[u64]) -> Vec<String> {
    let mut by_flow: BTreeMap<&str, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for r in runs {
        let start = r["started_ms"].as_u64().unwrap();
        let kill = kills.iter().copied().find(|k| *k >= start);
        let mut end = r["ended_ms"].as_u64().unwrap_or(u64::MAX);
        if r["outcome"] == "interrupted"
            && let Some(k) = kill
        {
            end = end.min(k);
        }
        let flow = r["flow"].as_str().unwrap();
        by_flow
            .entry(writes(flow))
            .or_default()
            .push((start, end, flow));
    }
    let mut out = vec![];
    for (flow, mut rs) in by_flow {
        rs.sort();
        for w in rs.windows(2) {
            if w[1].0 < w[0].1 {
                out.push(format!("{flow}: {:?} and {:?}", w[0], w[1]));
            }
        }
    }
    out
}

/// The storm's random source and length, from `WEFT_CHAOS_SEED` (random
/// unless set) and `WEFT_CHAOS_SECS` (`default_secs` unless set); both
/// printed, so that a failure can be replayed.
/// An Acme whose webhooks are duplicated, reordered and dropped.
pub(crate) fn stormy_acme() -> AcmeConfig {
    acme_with(Faults {
        duplicate_webhooks: 0.3,
        webhook_jitter_ms: 400,
        dropped_webhooks: 0.1,
        ..Faults::default()
    })
}

pub(crate) fn storm(default_secs: u64) -> (StdRng, u64) {
    let seed: u64 = std::env::var("WEFT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let secs: u64 = std::env::var("WEFT_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    eprintln!("WEFT_CHAOS_SEED={seed} WEFT_CHAOS_SECS={secs}");
    (StdRng::seed_from_u64(seed), secs)
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_polls_manual_runs_and_kill_9_end_in_what_acme_says() {
    let (mut rng, secs) = storm(40);
    let tenants = vec![last_known("t1"), last_known("t2")];
    let env = DemoEnv::start(stormy_acme(), tenants).await.unwrap();
    let port = free_port();
    let config = env.dir.path().join("serve.toml");
    std::fs::write(&config, serve_config(&env, port, "3s")).unwrap();
    prepare_state(&env, &config);
    let mut weft = Weft::start(
        config,
        format!("http://127.0.0.1:{port}"),
        env.dir.path().join("serve.log"),
    )
    .await;
    subscribe(&weft, "t1").await;
    let mut world = World::read(&env).await;

    // The storm.
    let mut kills = vec![];
    let (mut changes, mut manual) = (0, 0);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(3000..7000));
    while Instant::now() < end {
        world.change(&env, &mut rng).await;
        changes += 1;
        if weft.child.is_some() && rng.random_bool(0.05) {
            let flow = FLOWS[rng.random_range(0..FLOWS.len())];
            let (s, v) = weft.queue_run("t1", flow).await;
            assert!(s < 300, "{s} {v}");
            manual += 1;
        }
        if Instant::now() >= next_kill {
            weft.kill();
            kills.push(now_ms());
            // Acme goes on, and its deliveries fail meanwhile.
            let down = Instant::now() + Duration::from_millis(rng.random_range(200..1500));
            while Instant::now() < down {
                world.change(&env, &mut rng).await;
                changes += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(10..100))).await;
            }
            weft.restart().await;
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(3000..8000));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..150))).await;
    }
    eprintln!(
        "{changes} changes, {manual} manual runs, {} kills; {} webhook attempts",
        kills.len(),
        env.acme.deliveries().len()
    );

    let exact = settle(&env, &weft).await;
    for d in &exact.differences {
        // What Acme holds of each record that differs, and what weft did.
        if let Some(id) = d.split("acme-").nth(1).and_then(|r| r.split('@').next()) {
            let apt = env.acme_get(&format!("/appointments/{id}")).await.unwrap();
            let contact = apt["contact_id"].as_str().unwrap_or_default();
            eprintln!(
                "{d}\n  acme: {apt}\n  contact: {}\n  deliveries: {:?}",
                env.acme_get(&format!("/contacts?ids={contact}"))
                    .await
                    .unwrap(),
                env.acme
                    .deliveries()
                    .iter()
                    .filter(|a| a.status != 0)
                    .count(),
            );
        }
    }
    if !exact.differences.is_empty() {
        let (_, dead) = weft.call("GET", "/v1/dead-letters?tenant=t1", None).await;
        eprintln!("dead letters: {dead}\nlog:\n{}", weft.log_tail());
    }
    assert_exact(&exact);

    // A tenant activated now, over the same Acme, shows the same.
    let (s, v) = weft.call("POST", "/v1/tenants/t2/activate", None).await;
    assert_eq!(s, 200, "{v}");
    run_all_and_wait(&weft, "t2").await;
    let (lived, fresh) = (
        env.calendar_view("t1").await.unwrap(),
        env.calendar_view("t2").await.unwrap(),
    );
    for (k, v) in &lived {
        assert_eq!(
            fresh.get(k),
            Some(v),
            "{k:?}: t1 (lived through it all) and t2 (activated now)"
        );
    }
    assert_eq!(lived.len(), fresh.len());
    for email in env.user_emails().await.unwrap() {
        assert_eq!(
            env.touchpoints("t1", &email).await.unwrap()["days"],
            env.touchpoints("t2", &email).await.unwrap()["days"],
            "dashboard of {email}"
        );
    }

    // One writer per destination, whatever started the runs.
    let runs = runs(&weft, "t1").await;
    let triggers: BTreeMap<String, usize> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["trigger"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        m
    });
    eprintln!(
        "t1 runs by trigger: {triggers:?}; {} events, {} touch-points",
        exact.events, exact.touchpoints
    );
    assert!(
        triggers.contains_key("webhook") && triggers.contains_key("schedule"),
        "{triggers:?}"
    );
    let overlapping = overlaps(&runs, &kills);
    assert!(overlapping.is_empty(), "{overlapping:#?}");
    weft.kill();
}
