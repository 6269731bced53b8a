//! The `weft` command line. `args.rs` is its grammar; `shared.rs` the
//! commands written once over `weft::ops::Ops` (dead letters, flow state,
//! runs, config export, connectors add and list), which work on the state
//! opened here ([`weft::ops::Local`]) or against a running `weft serve`
//! (`--server`, [`weft::ops::Remote`]); `local.rs` the commands of this
//! process alone (test, sdk, new, inspect, serve, run); `remote.rs` `run`
//! against a server; `output.rs` how anything is printed.

pub(crate) mod output;

mod args;
mod local;
mod remote;
mod shared;

use anyhow::Context;
pub(crate) use args::*;
use std::process::ExitCode;
use weft::config::WeftConfig;
use weft::ops::{Local, Remote, Scope};

/// A command's `--tenant`/`--flow` as a scope.
pub(crate) fn scope(f: &Filter) -> Scope {
    Scope {
        tenant: f.tenant.clone(),
        flow: f.flow.clone(),
    }
}

/// Runs the command `cli` names: here, or against the server it names
/// (`--server`, `WEFT_SERVER` or `server` in `weft.toml`).
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let server = cli
        .server
        .clone()
        .or_else(|| WeftConfig::load(&cli.config).ok().and_then(|c| c.server));
    let here_only = matches!(
        cli.command,
        Command::Serve
            | Command::Compile { .. }
            | Command::New { .. }
            | Command::Test { .. }
            | Command::Sdk { .. }
            | Command::Connectors {
                command: ConnectorsCommand::Inspect { .. }
            }
            | Command::State {
                command: StateCommand::Copy { .. }
            }
    );
    let remote = |server: &str| -> anyhow::Result<Remote> {
        let token = std::env::var("WEFT_TOKEN")
            .or_else(|_| std::env::var("WEFT_ADMIN_TOKEN"))
            .context("set WEFT_TOKEN to an admin API token of the server")?;
        Ok(Remote::new(server, &token))
    };
    match (&cli.command, server) {
        _ if here_only => local::run(&cli).await,
        (
            Command::Run {
                filter,
                backfill,
                record,
                wait,
            },
            Some(server),
        ) => {
            if record.is_some() {
                anyhow::bail!(
                    "--record records the calls of runs in this process; run without --server"
                );
            }
            remote::run(&remote(&server)?, &server, filter, *backfill, *wait).await
        }
        (Command::Run { .. }, None) => local::run(&cli).await,
        (command, Some(server)) => shared::run(&remote(&server)?, command).await,
        (command, None) => {
            let host = local::open(&cli)?;
            shared::run(&Local::new(&host), command).await
        }
    }
}
