//! The `log` import, and the guest's stdout and stderr.
//!
//! Every line becomes a `tracing` event carrying the tenant, flow, run and
//! connector as fields, and is also kept (the newest few hundred) with the
//! instance so that the runner can attach it to a run. Lines longer than the
//! limit are truncated; past the per-call budget lines are counted and
//! dropped, so a chatty or hostile guest cannot flood the host's logs.

use super::{ConnectorCtx, Identity};
use crate::bindings::v0_1_0::log::{Host, Level};
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
        match level {
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
    /// into lines.
    pub fn stream(&self, level: &'static str) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            level,
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
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    fn push(&self, buf: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(buf);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            self.log
                .write(self.level, &String::from_utf8_lossy(&line), Vec::new());
        }
        // A line without a newline is flushed once it reaches the limit.
        if pending.len() > self.log.max_line {
            let line: Vec<u8> = std::mem::take(&mut *pending);
            self.log
                .write(self.level, &String::from_utf8_lossy(&line), Vec::new());
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
}
