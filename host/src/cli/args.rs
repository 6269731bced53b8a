//! The command line's grammar (clap): every command, subcommand and flag.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// weft: run SaaS-integration connectors (WebAssembly components) in a sandbox.
#[derive(Parser)]
#[command(name = "weft", version, about)]
pub(crate) struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "WEFT_CONFIG",
        default_value = "weft.toml"
    )]
    pub(crate) config: PathBuf,
    /// Send the command to this running `weft serve` (its admin API) instead
    /// of opening the state directly; also `server` in weft.toml. The token
    /// comes from `WEFT_TOKEN`. Works for `run`, `connectors add|list`,
    /// `dlq`, `state`, `runs` and `config export`.
    #[arg(long, global = true, env = "WEFT_SERVER")]
    pub(crate) server: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum SdkCommand {
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
pub(crate) enum NewCommand {
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
pub(crate) struct Filter {
    /// Only this tenant.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Only this flow.
    #[arg(long)]
    pub(crate) flow: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ConnectorsCommand {
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
pub(crate) enum DlqCommand {
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
pub(crate) enum StateCommand {
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
    /// Copy the whole state (as `[state]` names it; sled by default) into
    /// an empty PostgreSQL database, with the registry's components, then
    /// compare the two fact by fact. Stop `weft serve` first; afterwards
    /// set `[state] backend = "postgres"` and `url`.
    Copy {
        /// The target: `postgres://user:password@host:port/database`.
        #[arg(long, env = "WEFT_COPY_TO", hide_env_values = true)]
        to: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the whole configuration as weft.toml: the file's settings with
    /// every live tenant, those written over the admin API included
    /// (secrets appear only as references).
    Export,
}

#[derive(Subcommand)]
pub(crate) enum RunsCommand {
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
