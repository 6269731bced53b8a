//! The `weft` command line: run flows, manage connector versions, inspect and
//! replay dead letters, look at and reset flow state, list runs. The
//! commands live in `cli/`; this file starts the process.

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

mod cli;

/// jemalloc, as every weft binary (see [`weft::Allocator`]).
#[global_allocator]
static ALLOC: weft::Allocator = weft::Allocator;

/// Worker threads of the async runtime per core (see `main`).
const WORKERS_PER_CORE: usize = 4;

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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // A state commit holds its worker thread for a disk sync (sled's flush;
    // PostgreSQL's calls block in place): with one worker a core, the cores
    // idled while runs waited on the disk. Four a core kept a 1,000-tenant
    // `weft run` busy (`make bench`, tenants). TOKIO_WORKER_THREADS still
    // decides when it is set.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores * WORKERS_PER_CORE);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) if cli::output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
