//! The integration tests of this crate, as one test binary: every binary
//! links wasmtime and the whole host, so one link instead of one per file
//! saves minutes of build and gigabytes of disk. Each module is one file of
//! tests; run one with `cargo nextest run -p weft-demo -E 'test(/^MODULE::/)'`
//! or `cargo test -p weft-demo --test integration MODULE::`.

mod acme_crm;
mod chaos;
mod console;
mod exposed;
mod integrations;
mod postgres;
mod replicas;
mod service;
mod statements;
mod support;
