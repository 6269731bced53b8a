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
    /// Most bytes (keys plus values) one (tenant, connector) space may hold.
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
        Ok(())
    }
}
