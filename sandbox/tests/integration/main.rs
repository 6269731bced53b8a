//! The integration tests of this crate, as one test binary: every binary
//! links wasmtime and the whole host, so one link instead of one per file
//! saves minutes of build and gigabytes of disk. Each module is one file of
//! tests; run one with `cargo nextest run -p weft-sandbox -E 'test(/^MODULE::/)'`
//! or `cargo test -p weft-sandbox --test integration MODULE::`.

mod acme;
mod common;
mod dashboard;
mod radicale;
