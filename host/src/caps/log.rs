//! The `log` import, and the guest's stdout and stderr.
//!
//! Every line becomes a `tracing` event carrying the tenant, flow, run and
//! connector as fields, and is also kept (the newest few hundred) with the
//! instance so that the runner can attach it to a run. Lines longer than the
//! limit are truncated; past the per-call budget lines are counted and
//! dropped, so a chatty or hostile guest cannot flood the host's logs.

use super::{ConnectorCtx, Identity};
use crate::runtime::bindings::v0_1_0::log::{Host, Level};
use serde::Serialize;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// How many lines an instance keeps for inspection.
const KEPT_LINES: usize = 500;

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace` … `error`; stdout is `info`, stderr `warn`.
    pub level: String,
    /// The text.
    pub message: String,
    /// Extra fields.
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct LogState {
    kept: VecDeque<LogLine>,
    this_call: u32,
    dropped: u64,
}

/// The log of one instance.
#[derive(Debug, Clone)]
pub struct GuestLog {
    identity: Arc<Identity>,
    max_line: usize,
    max_per_call: u32,
    state: Arc<Mutex<LogState>>,
}

impl GuestLog {
    /// A log for `identity` with the given limits.
    pub fn new(identity: Identity, max_line: usize, max_per_call: u32) -> Self {
        GuestLog {
            identity: Arc::new(identity),
            max_line,
            max_per_call,
            state: Arc::default(),
        }
    }

    /// Starts a new call's budget.
    pub fn start_call(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .this_call = 0;
    }

    /// The lines kept so far, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.kept.iter().cloned().collect()
    }

    /// How many lines were dropped over budget.
    pub fn dropped(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// Records one line.
    pub fn write(&self, level: &str, message: &str, fields: Vec<(String, String)>) {
        self.write_traced(level, level, message, fields);
    }

    /// Records one line kept at `level` and traced at `traced` (the
    /// guest's stderr is kept as `warn` but traced at `debug`).
    fn write_traced(
        &self,
        level: &str,
        traced: &str,
        message: &str,
        fields: Vec<(String, String)>,
    ) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.this_call >= self.max_per_call {
            s.dropped += 1;
            return;
        }
        s.this_call += 1;
        let mut message = message.trim_end().to_owned();
        if message.len() > self.max_line {
            let mut cut = self.max_line;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …[truncated]");
        }
        let id = &self.identity;
        let flow = id.flow.as_deref().unwrap_or("");
        let run_id = id.run_id.as_deref().unwrap_or("");
        let f = format!("{fields:?}");
        match traced {
            "error" => {
                tracing::error!(target: "weft::guest", tenant = %id.tenant, flow, run_id, connector = %id.connector, fields = %f, "{message}")
            }
            "warn" => {
                tracing::warn!(target: "weft::guest", tenant = %id.tenant, flow, run_id, connector = %id.connector, fields = %f, "{message}")
            }
            "info" => {
                tracing::info!(target: "weft::guest", tenant = %id.tenant, flow, run_id, connector = %id.connector, fields = %f, "{message}")
            }
            "debug" => {
                tracing::debug!(target: "weft::guest", tenant = %id.tenant, flow, run_id, connector = %id.connector, fields = %f, "{message}")
            }
            _ => {
                tracing::trace!(target: "weft::guest", tenant = %id.tenant, flow, run_id, connector = %id.connector, fields = %f, "{message}")
            }
        }
        if s.kept.len() == KEPT_LINES {
            s.kept.pop_front();
        }
        s.kept.push_back(LogLine {
            level: level.to_owned(),
            message,
            fields,
        });
    }

    /// A writer for the guest's stdout (`info`) or stderr (`warn`), split
    /// into lines. Stderr is kept at `warn` (a trap's detail names its last
    /// line) but traced at `debug`: it is where a runtime prints a panic's
    /// traceback, once for every probe that isolates a bad record, and the
    /// record's dead letter already carries it. One line per dead-lettered
    /// record is the runner's, at `warn`.
    pub fn stream(&self, level: &'static str) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            level,
            traced: if level == "warn" { "debug" } else { level },
            pending: Arc::default(),
        }
    }
}

impl Host for ConnectorCtx {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let fields = fields.into_iter().take(32).collect();
        self.logs.write(level, &message, fields);
    }
}

/// The guest's stdout or stderr: bytes in, log lines out.
#[derive(Clone)]
pub struct GuestOutput {
    log: GuestLog,
    level: &'static str,
    traced: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    fn push(&self, buf: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(buf);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            self.log.write_traced(
                self.level,
                self.traced,
                &String::from_utf8_lossy(&line),
                Vec::new(),
            );
        }
        // A line without a newline is flushed once it reaches the limit.
        if pending.len() > self.log.max_line {
            let line: Vec<u8> = std::mem::take(&mut *pending);
            self.log.write_traced(
                self.level,
                self.traced,
                &String::from_utf8_lossy(&line),
                Vec::new(),
            );
        }
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let rest: Vec<u8> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !rest.is_empty() {
            self.log
                .write(self.level, &String::from_utf8_lossy(&rest), Vec::new());
        }
        Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Longest Python traceback a trap's detail quotes, in bytes.
const MAX_TRACEBACK_BYTES: usize = 2048;

/// What a trap's detail quotes of the guest's stderr lines (oldest first):
/// the last Python traceback before the trap's panic line, from
/// `Traceback (most recent call last):` to the exception line, at most
/// [`MAX_TRACEBACK_BYTES`] (the header, then as many of the innermost lines
/// as fit); else a Rust panic's line and the two after it; else the last
/// line. Lines are trimmed and joined with ` | `.
pub fn trap_excerpt(stderr: &[&str]) -> Option<String> {
    let panic = stderr.iter().rposition(|l| l.contains("panicked"));
    let before = &stderr[..panic.unwrap_or(stderr.len())];
    let header = "Traceback (most recent call last):";
    if let Some(start) = before
        .iter()
        .rposition(|l| l.trim_start().starts_with(header))
    {
        // The exception line is the first one after the header that is not
        // indented (frames and source lines are).
        let end = (start + 1..before.len())
            .find(|&i| !before[i].is_empty() && !before[i].starts_with([' ', '\t']))
            .unwrap_or(before.len() - 1);
        let lines: Vec<&str> = before[start..=end]
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        return Some(bounded_traceback(&lines));
    }
    if panic.is_none()
        && let Some(t) = js_exception_excerpt(stderr)
    {
        return Some(t);
    }
    let from = panic.or(stderr.len().checked_sub(1))?;
    Some(stderr[from..stderr.len().min(from + 3)].join(" | "))
}

/// What a componentize-js guest printed about the exception that made it
/// abort: the message and the innermost stack frame (SpiderMonkey prints the
/// message, `Stack:`, indented frames, then the abort line), or the last
/// line before the abort (a thrown string has no stack).
fn js_exception_excerpt(stderr: &[&str]) -> Option<String> {
    const JS_ABORT: &str = "Redirecting call to abort() to mozalloc_abort";
    let abort = stderr.iter().rposition(|l| l.trim() == JS_ABORT)?;
    let before = &stderr[..abort];
    if let Some(stack) = before.iter().rposition(|l| l.trim() == "Stack:")
        && stack > 0
    {
        let mut parts = vec![before[stack - 1].trim()];
        parts.extend(
            before
                .get(stack + 1)
                .map(|l| l.trim())
                .filter(|l| !l.is_empty()),
        );
        return Some(bounded_traceback(&parts));
    }
    before
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(|l| cut(l, MAX_TRACEBACK_BYTES))
}

/// `lines` (header first, exception last) joined with ` | `, cut to
/// [`MAX_TRACEBACK_BYTES`] by leaving out the outermost frames.
fn bounded_traceback(lines: &[&str]) -> String {
    let joined = lines.join(" | ");
    if joined.len() <= MAX_TRACEBACK_BYTES || lines.len() < 2 {
        return cut(&joined, MAX_TRACEBACK_BYTES);
    }
    let head = format!("{} | …", lines[0]);
    let mut tail: Vec<&str> = Vec::new();
    let mut len = head.len();
    for l in lines[1..].iter().rev() {
        if len + 3 + l.len() > MAX_TRACEBACK_BYTES && !tail.is_empty() {
            break;
        }
        len += 3 + l.len();
        tail.push(l);
    }
    tail.reverse();
    cut(
        &format!("{head} | {}", tail.join(" | ")),
        MAX_TRACEBACK_BYTES,
    )
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    format!("{} …", &s[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max_line: usize, per_call: u32) -> GuestLog {
        GuestLog::new(
            Identity {
                tenant: "t".into(),
                flow: None,
                run_id: None,
                connector: "c@1.0.0".into(),
            },
            max_line,
            per_call,
        )
    }

    #[test]
    fn budget_and_truncation() {
        let l = log(8, 2);
        l.write("info", "0123456789abc", vec![]);
        l.write("info", "b", vec![]);
        l.write("info", "c", vec![]);
        let lines = l.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].message.starts_with("01234567 …"), "{:?}", lines[0]);
        assert_eq!(l.dropped(), 1);
        l.start_call();
        l.write("info", "d", vec![]);
        assert_eq!(l.lines().len(), 3);
    }

    #[test]
    fn output_is_split_into_lines() {
        let l = log(100, 100);
        let out = l.stream("warn");
        out.push(b"one\ntw");
        out.push(b"o\n");
        let msgs: Vec<_> = l
            .lines()
            .into_iter()
            .map(|x| (x.level, x.message))
            .collect();
        assert_eq!(
            msgs,
            vec![("warn".into(), "one".into()), ("warn".into(), "two".into())]
        );
    }

    #[test]
    fn trap_excerpt_quotes_a_python_traceback() {
        // What a componentize-py guest prints when an export raises.
        let stderr = [
            "starting",
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 51, in map",
            "  File \"/1/weft_sdk/__init__.py\", line 174, in each_record",
            "    out.append(Ok(f(cfg, r)))",
            "               ^^^^^^^^^",
            "ValueError: record n2 asked to explode",
            "",
            "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:",
            "Python function threw an unexpected exception",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ];
        assert_eq!(
            trap_excerpt(&stderr).unwrap(),
            "Traceback (most recent call last): | File \"/0/app.py\", line 51, in map | \
             File \"/1/weft_sdk/__init__.py\", line 174, in each_record | \
             out.append(Ok(f(cfg, r))) | ^^^^^^^^^ | ValueError: record n2 asked to explode"
        );

        // Chained exceptions: the last traceback, which ends in the one raised.
        let chained = [
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 3, in map",
            "KeyError: 'n'",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            "  File \"/0/app.py\", line 5, in map",
            "RuntimeError: no n",
            "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:",
        ];
        assert_eq!(
            trap_excerpt(&chained).unwrap(),
            "Traceback (most recent call last): | File \"/0/app.py\", line 5, in map | RuntimeError: no n"
        );

        // A Rust panic: its line and the two after it.
        let rust = [
            "earlier",
            "thread 'main' panicked at src/lib.rs:3:5:",
            "test mapper: n=14 is a multiple of 14",
            "note: run with `RUST_BACKTRACE=1`",
            "more",
        ];
        assert_eq!(
            trap_excerpt(&rust).unwrap(),
            "thread 'main' panicked at src/lib.rs:3:5: | test mapper: n=14 is a multiple of 14 | note: run with `RUST_BACKTRACE=1`"
        );
        assert_eq!(trap_excerpt(&["just this"]).unwrap(), "just this");
        assert_eq!(trap_excerpt(&[]), None);
    }

    #[test]
    fn trap_excerpt_bounds_a_deep_traceback() {
        let frames: Vec<String> = (0..500)
            .map(|i| format!("  File \"/0/app.py\", line {i}, in recurse"))
            .collect();
        let mut stderr = vec!["Traceback (most recent call last):"];
        stderr.extend(frames.iter().map(String::as_str));
        let last = format!("RecursionError: {}", "é".repeat(3000));
        stderr.push(&last);
        stderr.push("thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:");
        let text = trap_excerpt(&stderr).unwrap();
        assert!(
            text.len() <= MAX_TRACEBACK_BYTES + "…".len() + 1,
            "{}",
            text.len()
        );
        assert!(text.starts_with("Traceback (most recent call last): | … | RecursionError: éé"));

        let short = format!("RecursionError: {}", "x".repeat(100));
        *stderr.get_mut(501).unwrap() = &short;
        let text = trap_excerpt(&stderr).unwrap();
        assert!(text.len() <= MAX_TRACEBACK_BYTES, "{}", text.len());
        assert!(
            text.starts_with("Traceback (most recent call last): | … | File"),
            "{text}"
        );
        assert!(text.ends_with(&short), "{text}");
        assert!(
            text.contains("line 499, in recurse"),
            "the innermost frames are kept"
        );
    }

    #[test]
    fn a_js_exception_is_quoted_with_its_innermost_frame() {
        let stderr = [
            "throwing-mapper: record r37 asked to explode",
            "Stack:",
            "  map/<@tests/components-js/throwing-mapper/index.js:28:15",
            "  map@tests/components-js/throwing-mapper/index.js:25:20",
            "",
            "Redirecting call to abort() to mozalloc_abort",
            "",
        ];
        assert_eq!(
            trap_excerpt(&stderr).unwrap(),
            "throwing-mapper: record r37 asked to explode | map/<@tests/components-js/throwing-mapper/index.js:28:15"
        );
        let thrown_string = [
            "\"a plain string\"",
            "Redirecting call to abort() to mozalloc_abort",
            "",
        ];
        assert_eq!(trap_excerpt(&thrown_string).unwrap(), "\"a plain string\"");
    }
}
