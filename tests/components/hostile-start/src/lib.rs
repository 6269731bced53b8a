//! Hostile test component: a function that blocks forever on a `wasi:io`
//! pollable, exported from the core module as `weft_block_at_start` so that
//! the host's test can make it the module's start function (the Rust
//! toolchain emits no start section itself): instantiating it then never
//! returns unless the host puts a deadline on instantiation. As built, the
//! same function also runs as a static constructor (at the first export
//! call), which `describe`'s own deadline must stop.

weft_sdk::connector_bindings!("mapper-connector");

use exports::weft::connector::mapper::Guest as Mapper;
use exports::weft::connector::metadata::Guest as Metadata;
use weft_sdk::types::{ConnectorInfo, Error, Record};

struct HostileStart;

/// Blocks forever.
#[unsafe(no_mangle)]
pub extern "C" fn weft_block_at_start() {
    block_forever();
}

/// Runs from the module's constructors, before any export is called.
extern "C" fn block_forever() {
    let forever = weft_sdk::wasi::clocks::monotonic_clock::subscribe_duration(u64::MAX);
    forever.block();
}

#[used]
#[unsafe(link_section = ".init_array")]
static BLOCK_AT_START: extern "C" fn() = block_forever;

impl Metadata for HostileStart {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "test-hostile-start".into(),
            version: "0.1.0".into(),
            description: "blocks in a static constructor".into(),
            streams: vec![],
            config_schema: "{}".into(),
            outbound_hosts: vec![],
        }
    }
}

impl Mapper for HostileStart {
    fn map(records: Vec<Record>) -> Vec<Result<Vec<Record>, Error>> {
        records.into_iter().map(|r| Ok(vec![r])).collect()
    }
}

export!(HostileStart);
