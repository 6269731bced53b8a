//! Paths of the built connectors and test components, and the `cargo`
//! arguments that built them (see `build.rs`).
//! Every component listed here has a test that loads it:
//! `host/tests/integration/runtime.rs` checks `ALL`.

include!(concat!(env!("OUT_DIR"), "/components.rs"));
