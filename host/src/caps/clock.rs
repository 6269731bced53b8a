//! A wall clock the host can set: a replay shows each recorded call's
//! start to the guest's `wasi:clocks/wall-clock` instead of the host's time.

use std::sync::Arc;

/// A wall clock a replay sets to each recorded call's start: the guest's
/// `wasi:clocks/wall-clock` reads it instead of the host's clock.
#[derive(Debug, Clone, Default)]
pub struct FrozenClock(Arc<std::sync::atomic::AtomicU64>);

impl FrozenClock {
    /// Shows `ms` (Unix milliseconds) from now on.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}
