//! Where credentials come from. Configuration never holds a secret inline:
//! it names an environment variable or a key of a secrets file (TOML, one
//! `name = "value"` per secret, readable only by the operator). Secrets are
//! resolved by the host when a tenant's grant is built and go only into
//! outbound requests: they never enter a connector's sandbox.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The value under this key in the secrets file.
    Secret(String),
}

/// A resolved secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for putting into a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolves [`SecretRef`]s against the environment and a secrets file.
#[derive(Debug, Default, Clone)]
pub struct SecretStore {
    file: BTreeMap<String, String>,
}

impl SecretStore {
    /// A store backed by the environment only.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// A store backed by the environment and the secrets file at `path`.
    pub fn with_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading secrets file {}", path.display()))?;
        let file: BTreeMap<String, String> = toml::from_str(&text).with_context(|| {
            format!(
                "secrets file {}: expected `name = \"value\"` lines",
                path.display()
            )
        })?;
        Ok(SecretStore { file })
    }

    /// A store with the given file entries (for tests and embedding).
    pub fn from_map(file: BTreeMap<String, String>) -> Self {
        SecretStore { file }
    }

    /// Resolves one reference, or says which variable or key is missing.
    pub fn resolve(&self, r: &SecretRef) -> anyhow::Result<Secret> {
        match r {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => bail!("environment variable {name} is empty"),
                Err(_) => bail!("environment variable {name} is not set"),
            },
            SecretRef::Secret(key) => self
                .file
                .get(key)
                .cloned()
                .map(Secret)
                .with_context(|| format!("secret {key:?} is not in the secrets file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn missing_file_key_is_named() {
        let store = SecretStore::from_map(BTreeMap::new());
        let err = store
            .resolve(&SecretRef::Secret("acme".into()))
            .unwrap_err();
        assert!(err.to_string().contains("\"acme\""), "{err}");
    }

    #[test]
    fn file_key_resolves() {
        let store = SecretStore::from_map([("k".to_string(), "v".to_string())].into());
        assert_eq!(
            store
                .resolve(&SecretRef::Secret("k".into()))
                .unwrap()
                .expose(),
            "v"
        );
    }
}
