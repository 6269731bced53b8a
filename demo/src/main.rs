//! `weft-demo`: runs the Acme → calendar + dashboard integration end to end
//! against the sandboxes and prints what a person wants to see. `make demo`
//! runs it. Everything it starts (the Acme and dashboard sandboxes in this
//! process, Radicale as a child) stops when it exits.

use clap::Parser;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use weft::state::RunOutcome;
use weft_demo::{DemoEnv, TenantSetup, property, totals};
use weft_sandbox::acme::data::Counts;
use weft_sandbox::acme::{AcmeConfig, Faults};

/// Run the Acme CRM → calendar + dashboard demo.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Appointments to generate in Acme.
    #[arg(long, default_value_t = 300)]
    appointments: usize,
    /// Activities to generate in Acme.
    #[arg(long, default_value_t = 300)]
    activities: usize,
    /// Keep the servers running after the demo, until Ctrl-C, so the URLs
    /// it prints can be opened.
    #[arg(long)]
    keep_running: bool,
    /// Record every connector call (inputs, HTTP exchanges, outputs) into
    /// this directory, one case file per connector and flow, for
    /// `weft test` (see `make cassettes`).
    #[arg(long, value_name = "DIR")]
    record: Option<std::path::PathBuf>,
}

const TENANT: &str = "northwind";

type Snapshot = BTreeMap<String, BTreeMap<String, String>>;

async fn snapshot(env: &DemoEnv, users: &[String]) -> anyhow::Result<Snapshot> {
    let mut out = BTreeMap::new();
    for u in users {
        out.insert(u.clone(), env.calendar(TENANT, u).await?);
    }
    Ok(out)
}

fn print_runs(title: &str, runs: &[weft::state::RunRecord]) {
    println!("\n== {title}");
    for r in runs {
        println!(
            "  {:<13} {:<10} {:>3} pages {:>4} fetched {:>4} emitted {:>3} stale {:>3} dead-lettered {:>3} retries{}",
            r.flow,
            format!("{:?}", r.outcome).to_lowercase(),
            r.pages,
            r.fetched,
            r.emitted,
            r.skipped_stale,
            r.dead_lettered,
            r.retries,
            r.error
                .as_deref()
                .map(|e| format!("\n      {e}"))
                .unwrap_or_default()
        );
    }
}

fn print_changes(before: &Snapshot, after: &Snapshot) {
    println!(
        "  {:<40} {:>8} {:>8} {:>8} {:>8}",
        "user", "created", "updated", "removed", "total"
    );
    for (user, now) in after {
        let empty = BTreeMap::new();
        let then = before.get(user).unwrap_or(&empty);
        let created = now.keys().filter(|k| !then.contains_key(*k)).count();
        let removed = then.keys().filter(|k| !now.contains_key(*k)).count();
        let updated = now
            .iter()
            .filter(|(k, v)| then.get(*k).is_some_and(|old| old != *v))
            .count();
        println!(
            "  {user:<40} {created:>8} {updated:>8} {removed:>8} {:>8}",
            now.len()
        );
    }
}

/// jemalloc, as every weft binary (see [`weft::Allocator`]).
#[global_allocator]
static ALLOC: weft::Allocator = weft::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let acme = AcmeConfig {
        counts: Counts {
            users: 4,
            contacts: 80,
            appointments: args.appointments,
            activities: args.activities,
        },
        // Acme misbehaves a little, as real APIs do.
        faults: Faults {
            error_503: 0.03,
            malformed_json: 0.02,
            ..Faults::default()
        },
        ..AcmeConfig::default()
    };
    let mut tenant = TenantSetup::new(TENANT);
    tenant.calendar_options = r#"title_template = "{title} ({customer})""#.into();
    println!("Starting the Acme sandbox, the dashboard sandbox and Radicale...");
    let env = DemoEnv::start(acme, vec![tenant]).await?;
    println!("  Acme API:  {}", env.acme.base_url());
    println!("  Dashboard: {}", env.dashboard.url());
    println!("  CalDAV:    {}", env.radicale.url());
    println!("  weft.toml: {}", env.config_path().display());

    // Bad on purpose: an appointment whose owner Acme does not know.
    let contact = env.acme_get("/contacts?limit=1").await?["data"][0]["id"].clone();
    env.acme_control(
        "POST",
        "/appointments",
        json!({ "owner_id": "usr_gone", "contact_id": contact, "title": "Orphan", "starts_at": "2026-12-01T10:00:00+01:00", "timezone": "Europe/Berlin" }),
    )
    .await?;

    let recording = args.record.as_ref().map(|dir| env.host.record_into(dir));
    let users = env.user_emails().await?;
    let runs = env.sync(TENANT).await?;
    print_runs("First sync", &runs);
    let first = snapshot(&env, &users).await?;
    println!("\nCalendar events per user after the first sync:");
    print_changes(&BTreeMap::new(), &first);

    // Change Acme: move one appointment, cancel one, delete one, change a
    // customer's phone, delete an activity, add an appointment and an email.
    println!("\n== Changing Acme: reschedule, cancel, delete, new phone, new records");
    let apts = env.appointments().await?;
    let live: Vec<_> = apts
        .iter()
        .filter(|a| {
            a["deleted_at"].is_null()
                && a["status"] == "scheduled"
                && !a["starts_at"].is_null()
                && a["owner_id"] != "usr_gone"
        })
        .collect();
    let by_uid =
        |a: &serde_json::Value| format!("acme-{}@{TENANT}", a["id"].as_str().unwrap_or(""));
    let in_calendar: HashMap<String, String> = first
        .values()
        .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    let synced: Vec<_> = live
        .iter()
        .filter(|a| in_calendar.contains_key(&by_uid(a)))
        .collect();
    anyhow::ensure!(
        synced.len() >= 5,
        "too few synced appointments to demonstrate changes"
    );
    env.acme_control("PATCH", &format!("/appointments/{}", synced[0]["id"].as_str().unwrap_or("")), json!({ "title": "Rescheduled renewal", "starts_at": "2026-12-03T15:00:00-06:00", "ends_at": "2026-12-03T16:00:00-06:00" })).await?;
    env.acme_control(
        "PATCH",
        &format!("/appointments/{}", synced[1]["id"].as_str().unwrap_or("")),
        json!({ "status": "cancelled" }),
    )
    .await?;
    env.acme_control(
        "DELETE",
        &format!("/appointments/{}", synced[2]["id"].as_str().unwrap_or("")),
        json!({}),
    )
    .await?;
    // Given to another rep: the event moves to that rep's calendar.
    let other_owner = env.acme_get("/users").await?["data"]
        .as_array()
        .and_then(|us| {
            us.iter()
                .find(|u| u["id"] != synced[4]["owner_id"])
                .cloned()
        })
        .map(|u| u["id"].clone())
        .unwrap_or_default();
    env.acme_control(
        "PATCH",
        &format!("/appointments/{}", synced[4]["id"].as_str().unwrap_or("")),
        json!({ "owner_id": other_owner }),
    )
    .await?;
    let changed_contact = synced[3]["contact_id"].as_str().unwrap_or("").to_owned();
    env.acme_control(
        "PATCH",
        &format!("/contacts/{changed_contact}"),
        json!({ "phone": "+1 (312) 555-0199 (new)" }),
    )
    .await?;
    let owner = synced[3]["owner_id"].clone();
    env.acme_control("POST", "/appointments", json!({ "owner_id": owner, "contact_id": changed_contact, "title": "Brand new meeting", "starts_at": "2026-12-10T09:30:00+09:00", "ends_at": null, "timezone": "Asia/Tokyo", "location": "Tokyo office" })).await?;
    let acts = env.acme_get("/activities?types=email,call&limit=5").await?;
    if let Some(a) = acts["data"].as_array().and_then(|a| a.first()) {
        env.acme_control(
            "DELETE",
            &format!("/activities/{}", a["id"].as_str().unwrap_or("")),
            json!({}),
        )
        .await?;
    }
    // An email re-filed as a meeting stops being a touch-point.
    if let Some(a) = acts["data"].as_array().and_then(|a| a.get(1)) {
        env.acme_control(
            "PATCH",
            &format!("/activities/{}", a["id"].as_str().unwrap_or("")),
            json!({ "type": "meeting" }),
        )
        .await?;
    }
    env.acme_control("POST", "/activities", json!({ "type": "email", "direction": "inbound", "owner_id": owner, "contact_id": changed_contact, "occurred_at": "2026-11-25T12:00:00Z", "subject": "Re: renewal" })).await?;
    println!(
        "  rescheduled {}, cancelled {}, deleted {}, gave {} to {other_owner}, new phone for {changed_contact}, an email became a meeting",
        synced[0]["id"], synced[1]["id"], synced[2]["id"], synced[4]["id"]
    );

    let runs = env.sync(TENANT).await?;
    print_runs("Second sync", &runs);
    let second = snapshot(&env, &users).await?;
    println!("\nCalendar events per user, second sync against the first:");
    print_changes(&first, &second);

    let changed = second
        .values()
        .flat_map(|m| m.values())
        .find(|ics| ics.contains("(new)"));
    if let Some(ics) = changed {
        println!(
            "  an event of the customer whose phone changed now reads: {:?}",
            property(ics, "CONTACT").unwrap_or_default()
        );
    }

    println!("\n== Touch-points per user (dashboard)");
    println!("  {:<40} {:>6} {:>6}", "user", "email", "phone");
    for u in &users {
        let (e, p) = totals(&env.touchpoints(TENANT, u).await?);
        println!("  {u:<40} {e:>6} {p:>6}");
    }

    let dead = env.host.state.dead_letters(Some(TENANT), None)?;
    println!("\n== Dead letters ({})", dead.len());
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &dead {
        let reason = d.error.to_string();
        let general = reason
            .split_once(": ")
            .map(|(_, r)| r.to_owned())
            .unwrap_or(reason.clone());
        let general = general
            .split_whitespace()
            .map(|w| {
                if w.starts_with("apt_") || w.starts_with("con_") {
                    "…"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        reasons
            .entry(general)
            .or_default()
            .push(format!("{} ({})", d.id, d.record.key));
    }
    for (reason, ids) in &reasons {
        println!("  {:>3} × {reason}", ids.len());
        println!(
            "        e.g. {}",
            ids.iter().take(2).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(d) = dead.first() {
        // What `weft dlq show ID` prints: everything needed to act on it.
        println!(
            "  one of them in full (as `weft dlq show {}` prints it):",
            d.id
        );
        for line in serde_json::to_string_pretty(d)?.lines().take(40) {
            println!("    {line}");
        }
    }

    println!("\n== Checking against Acme");
    let check = env.check_against_acme(TENANT).await?;
    if check.differences.is_empty() {
        println!(
            "  exact: {} events, each in its owner's calendar only, and {} touch-points, as Acme holds them now",
            check.events, check.touchpoints
        );
    } else {
        for d in &check.differences {
            println!("  {d}");
        }
    }

    let user = second
        .iter()
        .max_by_key(|(_, m)| m.len())
        .map(|(u, _)| u.clone())
        .unwrap_or_default();
    let sample = second
        .get(&user)
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    println!("\n== Look at it");
    println!(
        "  Calendar of {user} (any CalDAV client): {}",
        env.calendar_url(TENANT, &user)
    );
    println!(
        "  One event as plain .ics: curl {}{}.ics",
        env.calendar_url(TENANT, &user),
        sample.split('@').next().unwrap_or("")
    );
    println!("  Dashboard page: {}/", env.dashboard.url());
    if let Some(rec) = recording {
        for path in rec.write()? {
            println!("  recorded {}", path.display());
        }
    }
    let failed = runs.iter().any(|r| r.outcome != RunOutcome::Succeeded);
    if args.keep_running {
        println!("\nServing until Ctrl-C...");
        tokio::signal::ctrl_c().await?;
    } else {
        println!(
            "\n(These servers stop now; run `cargo run -p weft-demo -- --keep-running` to keep them up.)"
        );
    }
    anyhow::ensure!(!failed, "a flow did not succeed");
    anyhow::ensure!(
        check.differences.is_empty(),
        "{} differences between Acme and our app",
        check.differences.len()
    );
    Ok(())
}
