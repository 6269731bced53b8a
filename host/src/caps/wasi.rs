//! The restricted WASI a connector gets. A std guest for `wasm32-wasip2`
//! imports `wasi:cli`, `wasi:io`, `wasi:clocks`, `wasi:random` and friends,
//! so the host links them, but grants nothing behind them: no preopened
//! directories, no environment variables or arguments, no sockets or name
//! lookups, and stdin is empty. Stdout and stderr become log lines that name
//! the tenant and connector.

use super::log::GuestLog;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Builds the WASI context of one instance.
/// `clock`, when given, is the guest's wall clock (a replay of recorded
/// calls); the host's otherwise.
pub fn restricted_ctx(log: &GuestLog, clock: Option<crate::caps::clock::FrozenClock>) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    if let Some(clock) = clock {
        b.wall_clock(clock);
    }
    b.stdout(log.stream("info"))
        .stderr(log.stream("warn"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    b.build()
}
