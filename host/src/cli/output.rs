//! What the commands print: lines to stdout that end quietly when the
//! reader goes away (`weft … | head`), JSON, a run's summary line.

use anyhow::Context;
use std::io::Write;
use weft::state::RunRecord;

/// Prints a line to stdout; a closed pipe (`weft … | head`) ends the
/// command quietly instead of panicking like `println!`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::output::StdoutError)?
    };
}

/// A failed write to stdout: the only error whose broken pipe means "the
/// reader went away" (`weft … | head`). A broken pipe anywhere else (a
/// server closing an upload) is an error like any other.
#[derive(Debug)]
pub(crate) struct StdoutError(pub(crate) std::io::Error);

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
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(|o| o.0.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).context("printing JSON")?
    );
    Ok(())
}

pub(crate) fn summary(r: &RunRecord) -> String {
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
