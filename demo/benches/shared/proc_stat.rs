//! What `/proc` says of a process the bench watches: its CPU and memory.

use std::time::Duration;

/// User + system CPU from the text of a `/proc/PID/stat` (clock ticks of
/// 10 ms).
pub fn proc_cpu(text: &str) -> Duration {
    let fields: Vec<&str> = text
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A `kB` field of `/proc/{pid}/status` (`VmRSS`, `VmHWM`) in KiB; `None`
/// once the process is gone (a zombie has no memory left to report).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}
