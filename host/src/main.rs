//! The `weft` command line: run flows, manage connector versions, inspect and
//! replay dead letters, look at and reset flow state, list runs.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use weft::Host;
use weft::config::WeftConfig;
use weft::flow::Trigger;
use weft::state::{RunOutcome, RunRecord};
use weft::{HostConfig, Runtime};

/// weft: run SaaS-integration connectors (WebAssembly components) in a sandbox.
#[derive(Parser)]
#[command(name = "weft", version, about)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "WEFT_CONFIG",
        default_value = "weft.toml"
    )]
    config: PathBuf,
    /// Send the command to this running `weft serve` (its admin API) instead
    /// of opening the state directly; also `server` in weft.toml. The token
    /// comes from `WEFT_TOKEN`. Works for `run`, `connectors add|list`,
    /// `dlq`, `state`, `runs` and `config export`.
    #[arg(long, global = true, env = "WEFT_SERVER")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run flows once: fetch, map, emit and commit until each source has no
    /// more; the flows run concurrently (`max_concurrent_runs`). Exits
    /// non-zero if any flow failed or needs attention.
    Run {
        #[command(flatten)]
        filter: Filter,
        /// Start from the beginning: clear the cursor and the versions
        /// delivered, and re-deliver everything.
        #[arg(long)]
        backfill: bool,
        /// Record every connector call of these runs (inputs, HTTP
        /// exchanges with credentials scrubbed, outputs) into DIR, one case
        /// file per connector and flow, for `weft test`.
        #[arg(long, value_name = "DIR")]
        record: Option<PathBuf>,
        /// With `--server`: wait for the queued run to end, print its
        /// summary line and exit with its outcome (without a server, `run`
        /// always waits).
        #[arg(long)]
        wait: bool,
    },
    /// Replay recorded calls against a connector, offline: no network, no
    /// state directory. Each case file (from `weft run --record`) gives the
    /// configuration, the key-value space and the calls with their HTTP
    /// exchanges; an output that differs from the recorded one is shown as
    /// a diff and the command exits non-zero.
    Test {
        /// The component (`.wasm`).
        connector: PathBuf,
        /// Case files, or directories of them (`*.json` whose connector
        /// has the component's name).
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// Write the new outputs into the case files instead of failing.
        #[arg(long)]
        update: bool,
    },
    /// Run as a service until SIGTERM or Ctrl-C: every active tenant's
    /// unpaused flows on their schedules, webhook ingress at
    /// `/hooks/{tenant}/{flow}`, the admin API under `/v1` (tokens:
    /// `WEFT_ADMIN_TOKEN`), `/healthz`, `/readyz`, `/metrics`, on
    /// `service.listen`. Flows needing attention are skipped until a manual
    /// run of them succeeds.
    Serve,
    /// Work with connector components.
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
    /// The dead-letter store.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Flow state: cursors and attention flags.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Recorded runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Write a new project.
    New {
        #[command(subcommand)]
        command: NewCommand,
    },
    /// The SDKs this weft carries.
    Sdk {
        #[command(subcommand)]
        command: SdkCommand,
    },
    /// Internal: compile a component in a child process with the time and
    /// memory budget of the limits (weft runs itself this way).
    #[command(name = "__compile", hide = true)]
    Compile {
        /// The component.
        input: PathBuf,
        /// Where the compiled form goes.
        output: PathBuf,
        /// The limits, as JSON.
        limits: String,
    },
}

#[derive(Subcommand)]
enum SdkCommand {
    /// Writes the SDK of `--lang` (the Rust crate, the Python package or
    /// the JavaScript module, with the WIT inside it) into the per-user
    /// data directory, once per build of weft, and prints its path.
    Path {
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: weft::scaffold::Lang,
    },
}

#[derive(Subcommand)]
enum NewCommand {
    /// Write a connector skeleton that builds, passes its own tests and
    /// loads as it is: `weft new connector crm-notes --world mapper --lang rust`.
    Connector {
        /// The connector's name (lowercase letters, digits and `-`).
        name: String,
        /// The world it implements (a mapper by default).
        #[arg(long, value_enum, default_value = "mapper")]
        world: weft::scaffold::World,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: weft::scaffold::Lang,
        /// Where to write it (a new or empty directory); `./NAME` by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK: a directory (what `weft sdk path` prints, or weft's
        /// `connectors/sdk`, `sdk-python` or `sdk-js`) or, for Rust, a git
        /// URL of weft (`file://` too). By default the SDK this weft
        /// carries, written where `weft sdk path` says.
        #[arg(long)]
        sdk: Option<String>,
    },
}

#[derive(Args, Clone)]
struct Filter {
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this flow.
    #[arg(long)]
    flow: Option<String>,
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Validate a component, store it by digest, precompile it and register
    /// its `name@version`.
    Add {
        /// The component file (`.wasm`).
        file: PathBuf,
    },
    /// List registered connector versions.
    List,
    /// Print a component's `describe` (and its world and digest) as JSON, or
    /// say why the file is not a weft connector. Needs no configuration.
    Inspect {
        /// The component file (`.wasm`).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters.
    List {
        #[command(flatten)]
        filter: Filter,
    },
    /// Show one dead letter with its record, as JSON.
    Show {
        /// The dead letter's ID (`dl_…`).
        id: String,
    },
    /// Send a dead letter through the flow's current mappers and destination.
    Replay {
        /// The dead letter's ID, or `all` with --tenant/--flow.
        id: String,
        #[command(flatten)]
        filter: Filter,
    },
    /// Delete a dead letter.
    Discard {
        /// The dead letter's ID.
        id: String,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// Show each flow's cursor and whether it needs attention.
    Show {
        #[command(flatten)]
        filter: Filter,
    },
    /// Reset a flow's cursor, to the beginning or to a date, and forget the
    /// versions delivered so that the next run re-delivers what it reads.
    Reset {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The flow.
        #[arg(long)]
        flow: String,
        /// Read changes from this instant (RFC 3339) instead of the
        /// beginning; the source gets the cursor `since:<instant>`.
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the whole configuration as weft.toml: the file's settings with
    /// every live tenant, those written over the admin API included
    /// (secrets appear only as references).
    Export,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List runs, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one run as JSON.
    Show {
        /// The run's ID (`run_…`).
        id: String,
    },
}

/// Prints a line to stdout; a closed pipe (`weft … | head`) ends the
/// command quietly instead of panicking like `println!`.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(StdoutError)?
    };
}

/// A failed write to stdout: the only error whose broken pipe means "the
/// reader went away" (`weft … | head`). A broken pipe anywhere else (a
/// server closing an upload) is an error like any other.
#[derive(Debug)]
struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `e` is stdout's reader having gone away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(|o| o.0.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// jemalloc, as every weft binary (see [`weft::Allocator`]).
#[global_allocator]
static ALLOC: weft::Allocator = weft::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Compile {
        input,
        output,
        limits,
    } = &cli.command
    {
        // The compiler child logs nothing: cranelift at `WEFT_LOG=debug`
        // would write for minutes and miss the compile deadline.
        return ExitCode::from(
            weft::runtime::engine::compile_child_main(input, output, limits) as u8,
        );
    }
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| "warn".into())
    };
    // `WEFT_LOG_FORMAT=json`: one JSON object a line, with the span fields
    // (tenant, flow, run, connector) on every line.
    if std::env::var("WEFT_LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init();
    }

    // Compile components in a child process of this binary, bounded in time
    // and memory (limits.compile_timeout_ms, limits.compile_memory_bytes).
    if let Ok(exe) = std::env::current_exe() {
        weft::runtime::engine::use_compiler_process(exe);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `weft test`: replays case files against a connector with no network and
/// no state directory.
async fn test_connector(
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

fn open(cli: &Cli) -> anyhow::Result<Host> {
    Host::open(config_of(cli)?)
}

/// The configuration: `--config` (or `WEFT_CONFIG`), or, when neither was
/// given and there is no `weft.toml` here, the defaults (state in `.weft`):
/// `weft connectors add` works in any folder.
fn config_of(cli: &Cli) -> anyhow::Result<WeftConfig> {
    let defaulted = cli.config == std::path::Path::new("weft.toml")
        && std::env::var_os("WEFT_CONFIG").is_none();
    if defaulted && !cli.config.exists() {
        eprintln!("no weft.toml here: using the defaults, with the state in .weft");
        return WeftConfig::parse("");
    }
    WeftConfig::load(&cli.config)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).context("printing JSON")?
    );
    Ok(())
}

fn flows<'a>(host: &'a Host, f: &'a Filter) -> anyhow::Result<Vec<(String, String)>> {
    let tenants = host.tenants();
    if let Some(t) = &f.tenant {
        tenants
            .get(t)
            .with_context(|| format!("no tenant {t:?} in the configuration"))?;
    }
    let mut out = Vec::new();
    for (tid, tenant) in &tenants {
        if !tenant.active && f.tenant.is_none() {
            continue;
        }
        if f.tenant.as_ref().is_some_and(|t| t != tid) {
            continue;
        }
        for (fid, flow) in &tenant.flows {
            if f.flow.as_ref().is_some_and(|x| x != fid) || (flow.paused && f.flow.is_none()) {
                continue;
            }
            out.push((tid.clone(), fid.clone()));
        }
    }
    if out.is_empty() {
        anyhow::bail!("no flow matches (check --tenant and --flow)");
    }
    Ok(out)
}

fn summary(r: &RunRecord) -> String {
    let outcome = r.outcome.label();
    let secs = r
        .ended_ms
        .unwrap_or(r.started_ms)
        .saturating_sub(r.started_ms) as f64
        / 1000.0;
    let mut s = format!(
        "{}/{}: {outcome} in {secs:.1}s: {} pages, {} fetched, {} mapped, {} emitted, {} stale, {} dead-lettered, {} retries ({})",
        r.tenant,
        r.flow,
        r.pages,
        r.fetched,
        r.mapped,
        r.emitted,
        r.skipped_stale,
        r.dead_lettered,
        r.retries,
        r.id
    );
    if let Some(e) = &r.error {
        s.push_str(&format!("\n    {e}"));
    }
    s
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let server = cli
        .server
        .clone()
        .or_else(|| WeftConfig::load(&cli.config).ok().and_then(|c| c.server));
    if let Some(server) = server
        && !matches!(
            cli.command,
            Command::Serve
                | Command::Compile { .. }
                | Command::New { .. }
                | Command::Test { .. }
                | Command::Sdk { .. }
        )
        && !matches!(
            cli.command,
            Command::Connectors {
                command: ConnectorsCommand::Inspect { .. }
            }
        )
    {
        return remote::run(&server, &cli.command).await;
    }
    match &cli.command {
        Command::Test {
            connector,
            cases,
            update,
        } => {
            return test_connector(&cli, connector, cases, *update).await;
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
        Command::Connectors {
            command: ConnectorsCommand::Add { file },
        } => {
            let host = open(&cli)?;
            let (e, new) = host.registry.add(&host.runtime, file).await?;
            outln!(
                "{} {}@{} ({}, {})",
                if new {
                    "registered"
                } else {
                    "already registered"
                },
                e.name,
                e.version,
                e.world,
                &e.digest[..12]
            );
        }
        Command::Connectors {
            command: ConnectorsCommand::List,
        } => {
            let host = open(&cli)?;
            for e in host.registry.list()? {
                outln!("{}@{}\t{}\t{}", e.name, e.version, e.world, &e.digest[..12]);
            }
        }
        Command::Compile { .. } => unreachable!("handled in main before the runtime starts"),
        Command::Serve => {
            let host = std::sync::Arc::new(open(&cli)?);
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
            let host = open(&cli)?;
            let recording = record.as_ref().map(|dir| host.record_into(dir));
            let trigger = if *backfill {
                Trigger::Backfill
            } else {
                Trigger::Manual
            };
            let tty = std::io::stderr().is_terminal();
            let mut failed = false;
            // The selected flows run concurrently (never two runs of one
            // flow), at most `max_concurrent_runs` at once; each prints its
            // summary when it ends.
            use futures::StreamExt;
            let started = Instant::now();
            let progress = |r: &RunRecord| {
                if tty {
                    let rate = r.fetched as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\r{}/{}: {} pages, {} records fetched, {rate:.0} records/s   ",
                        r.tenant, r.flow, r.pages, r.fetched
                    );
                }
            };
            let host = &host;
            let progress = &progress;
            let mut runs = futures::stream::iter(flows(host, filter)?)
                .map(|(tenant, flow)| async move {
                    host.run_flow(&tenant, &flow, trigger, progress).await
                })
                .buffer_unordered(host.config.max_concurrent_runs.max(1));
            let mut up_to_date = Vec::new();
            while let Some(r) = runs.next().await {
                let r = r?;
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
        Command::Dlq { command } => {
            let host = open(&cli)?;
            match command {
                DlqCommand::List { filter } => {
                    let list = host
                        .state
                        .dead_letters(filter.tenant.as_deref(), filter.flow.as_deref())?;
                    for d in &list {
                        outln!(
                            "{}\t{}/{}\t{} {}\t{} by {}\t{} attempt(s)\t{}",
                            d.id,
                            d.tenant,
                            d.flow,
                            d.record.kind,
                            d.record.key,
                            d.stage,
                            d.connector,
                            d.attempts,
                            d.error
                        );
                    }
                    if list.is_empty() {
                        eprintln!("no dead letters");
                    }
                }
                DlqCommand::Show { id } => {
                    let d = host
                        .state
                        .dead_letter(id)?
                        .with_context(|| format!("no dead letter {id}"))?;
                    print_json(&d)?;
                }
                DlqCommand::Replay { id, filter } => {
                    let ids: Vec<String> = if id == "all" {
                        host.state
                            .dead_letters(filter.tenant.as_deref(), filter.flow.as_deref())?
                            .into_iter()
                            .map(|d| d.id)
                            .collect()
                    } else {
                        vec![id.clone()]
                    };
                    let mut failed = false;
                    for id in ids {
                        match host.replay(&id).await? {
                            Ok(()) => outln!("{id}: delivered"),
                            Err(d) => {
                                failed = true;
                                outln!(
                                    "{id}: still failing at {} ({}): {}",
                                    d.stage,
                                    d.connector,
                                    d.error
                                );
                            }
                        }
                    }
                    if failed {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                DlqCommand::Discard { id } => {
                    if !host.state.remove_dead_letter(id)? {
                        anyhow::bail!("no dead letter {id}");
                    }
                    outln!("{id}: discarded");
                }
            }
        }
        Command::State { command } => {
            let host = open(&cli)?;
            match command {
                StateCommand::Show { filter } => {
                    for (tenant, flow) in flows(&host, filter)? {
                        let cursor = host.state.cursor(&tenant, &flow)?;
                        let health = weft::flow::flow_health(&*host.state, &tenant, &flow)?;
                        outln!(
                            "{tenant}/{flow}\tcursor: {}\t{health}",
                            cursor.as_deref().unwrap_or("(beginning)"),
                        );
                    }
                }
                StateCommand::Reset {
                    tenant,
                    flow,
                    since,
                } => {
                    host.flow(tenant, flow)?;
                    let cursor = match since {
                        Some(s) => {
                            humantime::parse_rfc3339_weak(s)
                                .or_else(|_| humantime::parse_rfc3339(s))
                                .with_context(|| {
                                    format!("--since {s:?} is not an RFC 3339 instant")
                                })?;
                            Some(format!("since:{s}"))
                        }
                        None => None,
                    };
                    host.state.reset_flow(tenant, flow, cursor.as_deref())?;
                    outln!(
                        "{tenant}/{flow}: cursor reset to {}",
                        cursor.as_deref().unwrap_or("the beginning")
                    );
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Export,
        } => {
            let host = open(&cli)?;
            outln!("{}", host.export_config()?);
        }
        Command::Runs { command } => {
            let host = open(&cli)?;
            match command {
                RunsCommand::List { filter, limit } => {
                    for r in
                        host.state
                            .runs(filter.tenant.as_deref(), filter.flow.as_deref(), *limit)?
                    {
                        outln!("{}", summary(&r));
                    }
                }
                RunsCommand::Show { id } => {
                    let r = host
                        .state
                        .run(id)?
                        .with_context(|| format!("no run {id}"))?;
                    print_json(&r)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CLI against a running `weft serve`: the same commands over the
/// admin API.
mod remote {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use serde_json::Value;

    struct Api {
        base: String,
        token: String,
    }

    impl Api {
        async fn call(&self, method: &str, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
            let url: http::Uri = format!("{}{path}", self.base.trim_end_matches('/')).parse()?;
            let authority = url
                .authority()
                .context("--server must be http://host:port")?
                .clone();
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .with_context(|| format!("connecting to weft serve at {}", self.base))?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(method)
                .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                .header("host", authority.as_str())
                .header("authorization", format!("Bearer {}", self.token))
                .body(Full::new(bytes::Bytes::from(body)))?;
            let resp = send.send_request(req).await.with_context(|| {
                format!("{method} {path}: the server closed the connection before answering")
            })?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            if !status.is_success() {
                anyhow::bail!(
                    "{method} {path}: {status}: {}",
                    v["error"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or(v.to_string())
                );
            }
            Ok(v)
        }
    }

    fn query(f: &Filter) -> String {
        let mut q = Vec::new();
        if let Some(t) = &f.tenant {
            q.push(format!("tenant={t}"));
        }
        if let Some(x) = &f.flow {
            q.push(format!("flow={x}"));
        }
        q.join("&")
    }

    pub async fn run(server: &str, command: &Command) -> anyhow::Result<ExitCode> {
        let api = Api {
            base: server.to_owned(),
            token: std::env::var("WEFT_TOKEN")
                .or_else(|_| std::env::var("WEFT_ADMIN_TOKEN"))
                .context("set WEFT_TOKEN to an admin API token of the server")?,
        };
        match command {
            Command::Run {
                filter,
                backfill,
                record,
                wait,
            } => {
                if record.is_some() {
                    anyhow::bail!(
                        "--record records the calls of runs in this process; run without --server"
                    );
                }
                let (Some(t), Some(f)) = (&filter.tenant, &filter.flow) else {
                    anyhow::bail!("against a server, `run` needs --tenant and --flow");
                };
                let runs = format!("/v1/runs?tenant={t}&flow={f}&limit=50");
                let ids = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let before = if *wait {
                    ids(&api.call("GET", &runs, vec![]).await?)
                } else {
                    vec![]
                };
                let body = serde_json::json!({ "backfill": backfill }).to_string();
                api.call(
                    "POST",
                    &format!("/v1/tenants/{t}/flows/{f}/runs"),
                    body.into_bytes(),
                )
                .await?;
                if !*wait {
                    outln!("{t}/{f}: queued on {server} (see `weft runs list`)");
                    return Ok(ExitCode::SUCCESS);
                }
                // The first run of the flow that was not there before, once
                // it has ended.
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let list = api.call("GET", &runs, vec![]).await?;
                    let ended = list.as_array().into_iter().flatten().find(|r| {
                        r["id"]
                            .as_str()
                            .is_some_and(|id| !before.iter().any(|b| b == id))
                            && r["outcome"] != "running"
                    });
                    if let Some(r) = ended {
                        let r: RunRecord = serde_json::from_value(r.clone())
                            .context("reading the run's record")?;
                        outln!("{}", summary(&r));
                        return Ok(if r.outcome == weft::state::RunOutcome::Succeeded {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        });
                    }
                }
            }
            Command::Connectors { command } => match command {
                ConnectorsCommand::Add { file } => {
                    let bytes = std::fs::read(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let v = api.call("POST", "/v1/connectors", bytes).await?;
                    print_json(&v)?;
                }
                ConnectorsCommand::List => {
                    print_json(&api.call("GET", "/v1/connectors", vec![]).await?)?
                }
                ConnectorsCommand::Inspect { .. } => unreachable!("handled locally"),
            },
            Command::Dlq { command } => match command {
                DlqCommand::List { filter } => print_json(
                    &api.call(
                        "GET",
                        &format!("/v1/dead-letters?{}", query(filter)),
                        vec![],
                    )
                    .await?,
                )?,
                DlqCommand::Show { id } => print_json(
                    &api.call("GET", &format!("/v1/dead-letters/{id}"), vec![])
                        .await?,
                )?,
                DlqCommand::Replay { id, filter } => {
                    let path = if id == "all" {
                        format!("/v1/dead-letters/replay?{}", query(filter))
                    } else {
                        format!("/v1/dead-letters/{id}/replay")
                    };
                    print_json(&api.call("POST", &path, vec![]).await?)?;
                }
                DlqCommand::Discard { id } => {
                    api.call("DELETE", &format!("/v1/dead-letters/{id}"), vec![])
                        .await?;
                    outln!("discarded {id}");
                }
            },
            Command::State { command } => match command {
                StateCommand::Show { filter } => {
                    let tenants = api.call("GET", "/v1/tenants", vec![]).await?;
                    for (t, v) in tenants.as_object().into_iter().flatten() {
                        if filter.tenant.as_ref().is_some_and(|x| x != t) {
                            continue;
                        }
                        for f in v["flows"].as_array().into_iter().flatten() {
                            let f = f.as_str().unwrap_or_default();
                            if filter.flow.as_ref().is_some_and(|x| x != f) {
                                continue;
                            }
                            let s = api
                                .call("GET", &format!("/v1/tenants/{t}/flows/{f}/state"), vec![])
                                .await?;
                            outln!(
                                "{t}/{f}\tcursor: {}\t{}",
                                s["cursor"].as_str().unwrap_or("(beginning)"),
                                s["health"].as_str().unwrap_or_default()
                            );
                        }
                    }
                }
                StateCommand::Reset {
                    tenant,
                    flow,
                    since,
                } => {
                    let body = serde_json::json!({ "since": since }).to_string();
                    api.call(
                        "POST",
                        &format!("/v1/tenants/{tenant}/flows/{flow}/reset"),
                        body.into_bytes(),
                    )
                    .await?;
                    outln!("{tenant}/{flow}: reset");
                }
            },
            Command::Runs { command } => match command {
                RunsCommand::List { filter, limit } => {
                    let v = api
                        .call(
                            "GET",
                            &format!("/v1/runs?limit={limit}&{}", query(filter)),
                            vec![],
                        )
                        .await?;
                    for r in v.as_array().into_iter().flatten() {
                        let r: RunRecord = serde_json::from_value(r.clone())?;
                        outln!("{}", summary(&r));
                    }
                }
                RunsCommand::Show { id } => {
                    print_json(&api.call("GET", &format!("/v1/runs/{id}"), vec![]).await?)?
                }
            },
            Command::Config {
                command: ConfigCommand::Export,
            } => {
                let v = api.call("GET", "/v1/config/export", vec![]).await?;
                outln!("{}", v.as_str().unwrap_or_default());
            }
            Command::Serve
            | Command::Compile { .. }
            | Command::New { .. }
            | Command::Test { .. }
            | Command::Sdk { .. } => {
                unreachable!("handled locally")
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
