//! Hostile test component: `describe` hands back a 16 MiB description and a
//! name of 100,000 characters, which the host must refuse by its documented
//! length limits instead of registering and printing them.

weft_sdk::connector_bindings!("mapper-connector");

use exports::weft::connector::mapper::Guest as Mapper;
use exports::weft::connector::metadata::Guest as Metadata;
use weft_sdk::types::{ConnectorInfo, Error, Record};

struct HostileDescribe;

impl Metadata for HostileDescribe {
    fn describe() -> ConnectorInfo {
        ConnectorInfo {
            name: "n".repeat(100_000),
            version: "0.1.0".into(),
            description: "d".repeat(16 << 20),
            streams: vec![],
            config_schema: "{}".into(),
            outbound_hosts: vec![],
        }
    }
}

impl Mapper for HostileDescribe {
    fn map(records: Vec<Record>) -> Vec<Result<Vec<Record>, Error>> {
        records.into_iter().map(|r| Ok(vec![r])).collect()
    }
}

export!(HostileDescribe);
