//! Sandbox limits: what one connector instance may use. Operators set them in
//! the host configuration; every field has a default that suits a connector
//! paging through a SaaS API.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits applied to every connector instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time one guest call may take, in milliseconds, including
    /// the time spent in host calls (HTTP) on its behalf.
    pub call_timeout_ms: u64,
    /// WebAssembly stack available to a guest, in bytes.
    pub stack_bytes: usize,
    /// Most records one call may hand back (a page, a map outcome list).
    pub max_records_per_call: usize,
    /// Largest record body, in bytes.
    pub max_record_body_bytes: usize,
    /// Largest key-value key, in bytes.
    pub max_kv_key_bytes: usize,
    /// Largest key-value value, in bytes.
    pub max_kv_value_bytes: usize,
    /// Most bytes one (tenant, connector) key-value space may hold; each
    /// entry counts its key, its value, the space's prefix and 64 bytes of
    /// overhead.
    pub max_kv_total_bytes: u64,
    /// Longest log line a guest may write; longer ones are truncated.
    pub max_log_line_bytes: usize,
    /// Most log lines (including stdout/stderr lines) per guest call; the
    /// rest are counted and dropped.
    pub max_log_lines_per_call: u32,
    /// Largest HTTP response body a guest may receive, in bytes.
    pub max_http_response_bytes: usize,
    /// Largest HTTP request body a guest may send, in bytes.
    pub max_http_request_bytes: usize,
    /// Longest a single outbound HTTP attempt may take, in milliseconds (it is
    /// also cut to what is left of the guest call).
    pub http_request_timeout_ms: u64,
    /// How many connector instances may exist at once (pooling allocator).
    pub max_instances: u32,
    /// Most host resources (`wasi:http` header sets, requests, bodies,
    /// streams, pollables) one instance may hold at once.
    pub max_resources: usize,
    /// Largest set of HTTP header fields a guest may build or receive, in
    /// bytes of its in-memory form. With `max_resources`, this bounds the
    /// header memory a guest can hold in the host.
    pub max_http_fields_bytes: usize,
    /// Most outbound HTTP requests of one instance in flight at once; with
    /// `max_http_request_bytes` and `max_http_response_bytes` this bounds the
    /// body memory a guest can hold in the host.
    pub max_http_in_flight: usize,
    /// Longest name, version, stream name, record kind or origin pattern a
    /// guest may hand back, in bytes.
    pub max_label_bytes: usize,
    /// Longest description, error message or cursor a guest may hand back,
    /// in bytes. Longer error messages are cut; longer descriptions and
    /// cursors are refused.
    pub max_text_bytes: usize,
    /// Largest config schema in `describe`, in bytes.
    pub max_schema_bytes: usize,
    /// Most streams or outbound-host patterns in `describe`.
    pub max_list_items: usize,
    /// Longest record key, in bytes.
    pub max_record_key_bytes: usize,
    /// Most keys one (tenant, connector) key-value space may hold.
    pub max_kv_keys: u64,
    /// Most pages one run may fetch before it is stopped.
    pub max_run_pages: u64,
    /// Most records one run may fetch before it is stopped.
    pub max_run_records: u64,
    /// Longest one run may take, in seconds, before it is stopped (after
    /// the page in progress is committed).
    pub max_run_seconds: u64,
    /// Largest component file weft accepts, in bytes.
    pub max_component_bytes: usize,
    /// Longest compiling one component may take, in milliseconds.
    pub compile_timeout_ms: u64,
    /// Most memory compiling one component may use, in bytes (the compiler
    /// runs in a child process with this address-space limit).
    pub compile_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            call_timeout_ms: 60_000,
            stack_bytes: 1 << 20,
            max_records_per_call: 10_000,
            max_record_body_bytes: 1 << 20,
            max_kv_key_bytes: 512,
            max_kv_value_bytes: 256 << 10,
            max_kv_total_bytes: 32 << 20,
            max_log_line_bytes: 4096,
            max_log_lines_per_call: 2_000,
            max_http_response_bytes: 16 << 20,
            max_http_request_bytes: 8 << 20,
            http_request_timeout_ms: 30_000,
            max_instances: 64,
            max_resources: 1_024,
            max_http_fields_bytes: 64 << 10,
            max_http_in_flight: 8,
            max_label_bytes: 128,
            max_text_bytes: 16 << 10,
            max_schema_bytes: 256 << 10,
            max_list_items: 256,
            max_record_key_bytes: 1 << 10,
            max_kv_keys: 250_000,
            max_run_pages: 100_000,
            max_run_records: 10_000_000,
            max_run_seconds: 6 * 3600,
            max_component_bytes: 64 << 20,
            compile_timeout_ms: 300_000,
            compile_memory_bytes: 4 << 30,
        }
    }
}

impl Limits {
    /// The call deadline as a duration.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Checks that the limits make sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.memory_bytes >= 1 << 20,
            "limits.memory_bytes must be at least 1 MiB"
        );
        anyhow::ensure!(
            self.stack_bytes >= 64 << 10,
            "limits.stack_bytes must be at least 64 KiB"
        );
        anyhow::ensure!(
            self.call_timeout_ms >= 10,
            "limits.call_timeout_ms must be at least 10"
        );
        anyhow::ensure!(
            self.max_instances >= 1,
            "limits.max_instances must be at least 1"
        );
        anyhow::ensure!(
            self.max_records_per_call >= 1,
            "limits.max_records_per_call must be at least 1"
        );
        for (name, value, least) in [
            ("max_resources", self.max_resources as u64, 64),
            ("max_http_in_flight", self.max_http_in_flight as u64, 1),
            ("max_label_bytes", self.max_label_bytes as u64, 16),
            ("max_text_bytes", self.max_text_bytes as u64, 256),
            ("max_record_key_bytes", self.max_record_key_bytes as u64, 16),
            ("max_kv_keys", self.max_kv_keys, 1),
            ("max_run_pages", self.max_run_pages, 1),
            ("max_run_records", self.max_run_records, 1),
            ("max_run_seconds", self.max_run_seconds, 1),
            ("compile_timeout_ms", self.compile_timeout_ms, 100),
            ("compile_memory_bytes", self.compile_memory_bytes, 64 << 20),
        ] {
            anyhow::ensure!(value >= least, "limits.{name} must be at least {least}");
        }
        Ok(())
    }
}

/// The README's table of limits, rendered from this file's doc comments and
/// [`Limits::default`] (one row per field, in declaration order).
pub fn readme_table() -> String {
    let source = include_str!("limits.rs");
    let defaults = serde_json::to_value(Limits::default()).unwrap_or_default();
    let mut rows = vec![
        "| limit (`[limits]` in weft.toml) | default | what it bounds |".to_owned(),
        "|---|---|---|".to_owned(),
    ];
    let mut doc = Vec::new();
    let mut in_struct = false;
    for line in source.lines() {
        let t = line.trim();
        if t.starts_with("pub struct Limits") {
            in_struct = true;
            continue;
        }
        if !in_struct {
            continue;
        }
        if t == "}" {
            break;
        }
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim().to_owned());
        } else if let Some(rest) = t.strip_prefix("pub ") {
            let name = rest.split(':').next().unwrap_or("").trim();
            let value = &defaults[name];
            rows.push(format!(
                "| `{name}` | {} | {} |",
                human(name, value),
                doc.join(" ")
            ));
            doc.clear();
        }
    }
    rows.join("\n")
}

/// A default as people read it: sizes in KiB/MiB/GiB, times with units.
fn human(name: &str, v: &serde_json::Value) -> String {
    let Some(n) = v.as_u64() else {
        return v.to_string();
    };
    if name.ends_with("_bytes") && n >= 1024 {
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n % size == 0 {
                return format!("{} {unit}", n / size);
            }
        }
    }
    if name.ends_with("_ms") {
        return format!("{n} ms");
    }
    if name.ends_with("_seconds") {
        return format!("{n} s");
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    /// The README lists every limit with its default, as this file says.
    /// After changing a limit, run with `WEFT_BLESS=1` to rewrite the table.
    #[test]
    fn readme_lists_every_limit_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- limits:begin -->\n", "\n<!-- limits:end -->");
        let start = readme.find(begin).expect("README has a limits table") + begin.len();
        let stop = readme[start..].find(end).expect("the table ends") + start;
        let want = super::readme_table();
        if std::env::var_os("WEFT_BLESS").is_some() {
            let text = format!("{}{want}{}", &readme[..start], &readme[stop..]);
            std::fs::write(path, text).unwrap();
            return;
        }
        assert_eq!(
            readme[start..stop].trim(),
            want.trim(),
            "the README's limits table is out of date: run `WEFT_BLESS=1 cargo test -p weft-host readme_lists_every_limit`"
        );
    }
}
