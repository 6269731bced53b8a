//! The integration tests of this crate, as one test binary: every binary
//! links wasmtime and the whole host, so one link instead of one per file
//! saves minutes of build and gigabytes of disk. Each module is one file of
//! tests; run one with `cargo nextest run -p weft-host -E 'test(/^MODULE::/)'`
//! or `cargo test -p weft-host --test integration MODULE::`.

mod caldav;
mod common;
mod flows;
mod fuzz_policy;
mod hostile;
mod http;
mod javascript;
mod layers;
mod new_connector;
mod python;
mod runtime;
mod serve;
mod testkit;
#[path = "../shared/webhook_signature.rs"]
mod webhook_signature;
