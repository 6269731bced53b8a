//! The `weft` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use weft::{HostConfig, Runtime};

/// weft: run SaaS-integration connectors (WebAssembly components) in a sandbox.
#[derive(Parser)]
#[command(name = "weft", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with connector components.
    Connectors {
        #[command(subcommand)]
        command: ConnectorsCommand,
    },
}

#[derive(Subcommand)]
enum ConnectorsCommand {
    /// Print a component's `describe` (and its world and digest) as JSON, or
    /// say why the file is not a weft connector.
    Inspect {
        /// The component file (`.wasm`).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Connectors {
            command: ConnectorsCommand::Inspect { file },
        } => {
            let runtime = Runtime::new(HostConfig::default())?;
            let connector = runtime.load_file(&file).await?;
            let out = serde_json::json!({
                "file": file,
                "digest": connector.digest(),
                "world": connector.world(),
                "contract": format!("weft:connector@{}", connector.contract()),
                "describe": connector.info(),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).context("printing JSON")?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
