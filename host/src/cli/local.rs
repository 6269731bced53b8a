//! The commands that work in this process only: `weft test`, `sdk`, `new`,
//! `connectors inspect`, `serve`, and `run` without `--server`.

use super::args::*;
use super::output::{print_json, summary};
use crate::outln;
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use weft::Host;
use weft::config::WeftConfig;
use weft::flow::Trigger;
use weft::ops::Ops;
use weft::state::{RunOutcome, RunRecord};
use weft::{HostConfig, Runtime};

/// Runs `cli`'s command, one of this module's.
pub(crate) async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Test {
            connector,
            cases,
            update,
        } => {
            return test_connector(cli, connector, cases, *update).await;
        }
        Command::Sdk {
            command: SdkCommand::Path { lang },
        } => {
            outln!("{}", weft::scaffold::install_sdk(*lang)?.display());
            return Ok(ExitCode::SUCCESS);
        }
        Command::New {
            command:
                NewCommand::Connector {
                    name,
                    world,
                    lang,
                    dir,
                    sdk,
                },
        } => {
            let sdk = match sdk {
                Some(s) => weft::scaffold::SdkSource::parse(s),
                None => weft::scaffold::SdkSource::Path(weft::scaffold::install_sdk(*lang)?),
            };
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
            let files = weft::scaffold::new_connector(&dir, name, *world, *lang, &sdk)?;
            for f in &files {
                outln!("wrote {}", f.display());
            }
            outln!("next: see {}", dir.join("README.md").display());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Connectors {
            command: ConnectorsCommand::Inspect { file },
        } => {
            // The operator's limits when there is a configuration (the
            // defaults otherwise), and no state is opened: inspect works
            // beside a running `weft serve`. The compile cache is the one
            // `connectors add` and runs use (`{data_dir}/cache`), so a large
            // component is compiled once for inspect, add and runs; without
            // a configuration, the user's cache directory.
            let (limits, cache_dir) = if cli.config.exists() {
                let config = WeftConfig::load(&cli.config)?;
                (config.limits, Some(config.data_dir.join("cache")))
            } else {
                (weft::Limits::default(), user_cache_dir())
            };
            let runtime = Runtime::new(HostConfig {
                limits,
                cache_dir,
                ..HostConfig::default()
            })?;
            let connector = runtime.load_file(file).await?;
            print_json(&serde_json::json!({
                "file": file,
                "digest": connector.digest(),
                "world": connector.world(),
                "contract": format!("weft:connector@{}", connector.contract()),
                "describe": connector.info(),
            }))?;
        }
        Command::State {
            command: StateCommand::Copy { to },
        } => return copy_state(cli, to),
        Command::Serve => {
            let host = std::sync::Arc::new(open(cli)?);
            weft::service::preflight(&host)?;
            let tokens = weft::service::admin::operator_tokens_from_env();
            if tokens.is_empty() {
                tracing::warn!(
                    "WEFT_ADMIN_TOKEN is not set: the admin API accepts only tokens minted earlier"
                );
            }
            let listen = host.config.service.listen.clone();
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen} (service.listen)"))?;
            outln!("weft serve: listening on http://{}", listener.local_addr()?);
            let stop = async {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = match signal(SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            weft::service::run(
                host,
                listener,
                stop,
                |r| {
                    let _ = writeln!(std::io::stdout().lock(), "{}", summary(r));
                },
                tokens,
            )
            .await?;
        }
        Command::Run {
            filter,
            backfill,
            record,
            wait: _,
        } => {
            let host = std::sync::Arc::new(open(cli)?);
            let recording = record.as_ref().map(|dir| host.record_into(dir));
            let trigger = if *backfill {
                Trigger::Backfill
            } else {
                Trigger::Manual
            };
            let tty = std::io::stderr().is_terminal();
            let mut failed = false;
            let started = Instant::now();
            let progress: std::sync::Arc<dyn Fn(&RunRecord) + Send + Sync> =
                std::sync::Arc::new(move |r: &RunRecord| {
                    if tty {
                        let rate = r.fetched as f64 / started.elapsed().as_secs_f64().max(0.001);
                        eprint!(
                            "\r{}/{}: {} pages, {} records fetched, {rate:.0} records/s   ",
                            r.tenant, r.flow, r.pages, r.fetched
                        );
                    }
                });
            // The selected flows run concurrently, each a task of its own
            // on the multi-threaded runtime (driven from one task, they kept
            // to one core), at most `max_concurrent_runs` at once, never two
            // writers of one destination (the runs take its lease); each
            // prints its summary when it ends.
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(
                host.config.max_concurrent_runs.max(1),
            ));
            let mut runs = tokio::task::JoinSet::new();
            for (tenant, flow) in weft::ops::Local::new(&host)
                .flows(&super::scope(filter))
                .await?
            {
                let (host, progress, slots) = (host.clone(), progress.clone(), slots.clone());
                runs.spawn(async move {
                    let _slot = slots.acquire_owned().await?;
                    host.run_flow(&tenant, &flow, trigger, &*progress).await
                });
            }
            let mut up_to_date = Vec::new();
            while let Some(r) = runs.join_next().await {
                let r = r??;
                if tty {
                    eprint!("\r\x1b[2K");
                }
                failed |= r.outcome != RunOutcome::Succeeded;
                if r.emitted == 0 && r.dead_lettered == 0 && r.outcome == RunOutcome::Succeeded {
                    up_to_date.push(format!("{}/{}", r.tenant, r.flow));
                }
                outln!("{}", summary(&r));
            }
            if let Some(rec) = recording {
                for path in rec.write()? {
                    outln!("recorded {}", path.display());
                }
                if !up_to_date.is_empty() && !*backfill {
                    // Nothing new reached the mappers and the destination,
                    // so only the source's calls are in the recording.
                    outln!(
                        "note: {} had nothing new, so only the source was recorded; add --backfill to record every stage on everything the source has",
                        up_to_date.join(", ")
                    );
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        _ => unreachable!("not a command of this process"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `weft test`: replays case files against a connector with no network and
/// no state directory.
pub(crate) async fn test_connector(
    cli: &Cli,
    connector: &std::path::Path,
    cases: &[PathBuf],
    update: bool,
) -> anyhow::Result<ExitCode> {
    let limits = if cli.config.exists() {
        WeftConfig::load(&cli.config)?.limits
    } else {
        weft::Limits::default()
    };
    let kv = weft::state::kv::SledKv::temporary()?;
    // A resolver that knows no host: nothing can leave, even by mistake.
    let runtime = Runtime::with_parts(
        HostConfig {
            limits,
            cache_dir: user_cache_dir(),
            ..HostConfig::default()
        },
        kv.clone(),
        std::sync::Arc::new(weft::caps::http::StaticResolver::default()),
        weft::secrets::SecretStore::default(),
    )?;
    let component = runtime.load_file(connector).await?;
    let name = component.info().name.clone();
    let mut files = Vec::new();
    for c in cases {
        if c.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(c)
                .with_context(|| format!("reading {}", c.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .filter(|p| {
                    std::fs::read_to_string(p)
                        .ok()
                        .and_then(|t| serde_json::from_str::<weft::testkit::CaseFile>(&t).ok())
                        .is_some_and(|case| case.connector.split('@').next() == Some(name.as_str()))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(c.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!(
            "no case files for {name} in {}",
            cases
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (mut passed, mut updated, mut failed) = (0, 0, 0);
    for f in &files {
        let report = weft::testkit::run_case(&runtime, &*kv, &component, f, update).await?;
        passed += report.passed;
        updated += report.updated;
        if report.updated > 0 {
            outln!(
                "{}: {} call(s) passed, {} updated",
                f.display(),
                report.passed,
                report.updated
            );
        } else if report.failures.is_empty() {
            outln!("{}: {} call(s) passed", f.display(), report.passed);
        } else {
            outln!(
                "{}: {} call(s) passed, {} differ",
                f.display(),
                report.passed,
                report.failures.len()
            );
            for text in &report.failures {
                outln!("{text}");
            }
            failed += report.failures.len();
        }
    }
    if update {
        outln!("{passed} passed, {updated} updated, {failed} differ");
    } else {
        outln!("{passed} passed, {failed} differ");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `$XDG_CACHE_HOME/weft/compiled` or `~/.cache/weft/compiled`.
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weft").join("compiled"))
}

/// `weft state copy --to URL`: the configured state into PostgreSQL at
/// `to`, checked; prints the counts per kind and exits non-zero on any
/// difference.
fn copy_state(cli: &Cli, to: &str) -> anyhow::Result<ExitCode> {
    use weft::state::{PgState, SledState, StateItem, StateStore};
    let config = config_of(cli)?;
    let from: Box<dyn StateStore> = match config
        .state
        .resolve(std::env::var("WEFT_DATABASE_URL").ok())?
    {
        (weft::config::StateBackend::Postgres, Some(url)) => Box::new(PgState::open(&url)?),
        _ => Box::new(SledState::open(&config.data_dir.join("state"))?),
    };
    let target = PgState::open(to)?;
    // The registry's component files, as documents every replica reads.
    let mut extra = Vec::new();
    for c in from.connectors()? {
        let kind = weft::runtime::registry::COMPONENT_DOC;
        if from.doc_get(kind, &c.digest)?.is_some() {
            continue;
        }
        let file = config
            .data_dir
            .join("connectors")
            .join(format!("{}.wasm", c.digest));
        let value = std::fs::read(&file)
            .with_context(|| format!("{}@{}: reading {}", c.name, c.version, file.display()))?;
        extra.push(StateItem::Doc {
            kind: kind.to_owned(),
            id: c.digest.clone(),
            value,
        });
    }
    let report = weft::state::copy::copy_state(&*from, &target, extra)?;
    for (kind, (a, b)) in &report.counts {
        outln!("{kind}\t{a}\t→ {b}");
    }
    if report.differences.is_empty() {
        outln!("copied and compared: the two states hold the same facts");
        Ok(ExitCode::SUCCESS)
    } else {
        for d in &report.differences {
            eprintln!("{d}");
        }
        Ok(ExitCode::FAILURE)
    }
}

pub(crate) fn open(cli: &Cli) -> anyhow::Result<Host> {
    Host::open(config_of(cli)?)
}

/// The configuration: `--config` (or `WEFT_CONFIG`), or, when neither was
/// given and there is no `weft.toml` here, the defaults (state in `.weft`):
/// `weft connectors add` works in any folder.
pub(crate) fn config_of(cli: &Cli) -> anyhow::Result<WeftConfig> {
    let defaulted = cli.config == std::path::Path::new("weft.toml")
        && std::env::var_os("WEFT_CONFIG").is_none();
    if defaulted && !cli.config.exists() {
        eprintln!("no weft.toml here: using the defaults, with the state in .weft");
        return WeftConfig::parse("");
    }
    WeftConfig::load(&cli.config)
}
