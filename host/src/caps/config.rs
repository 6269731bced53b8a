//! The `config` import: the tenant's configuration of this connector. The
//! host validated it against the connector's schema before the run; secrets
//! are never part of it.

use super::ConnectorCtx;
use crate::runtime::bindings::v0_1_0::config::Host;

impl Host for ConnectorCtx {
    fn get_json(&mut self) -> String {
        self.config.to_string()
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).map(|v| v.to_string())
    }
}
