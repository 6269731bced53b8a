//! Where credentials come from. Configuration never holds a secret inline:
//! it names an environment variable or a key of a secrets file (TOML, one
//! `name = "value"` per secret, readable only by the operator). Secrets are
//! resolved by the host when a tenant's grant is built and go only into
//! outbound requests: they never enter a connector's sandbox.
//!
//! Tenants' own secrets, written over the admin API, are sealed at rest in
//! the state store ([`Vault`]) under a key the operator supplies.

use crate::state::StateStore;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The tenant's own sealed secret of this name if it has one, else the
    /// value under this key in the secrets file.
    Secret(String),
    /// The tenant's own sealed secret of this name (written over the admin
    /// API), never the secrets file: the only kind a tenant may write.
    Sealed(String),
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

/// Resolves [`SecretRef`]s against the environment, the tenant's sealed
/// secrets (written over the admin API) and the secrets file.
#[derive(Debug, Default, Clone)]
pub struct SecretStore {
    file: BTreeMap<String, String>,
    vault: Option<Vault>,
    tenant: Option<String>,
}

/// The document kind of sealed tenant secrets in the state store.
pub const SECRET_DOC: &str = "secret";

/// Tenant secrets sealed at rest with XChaCha20-Poly1305 under the
/// operator's key. A value is written once and never read back out of weft:
/// only [`SecretStore::resolve`] opens it, to put it into a request.
#[derive(Clone)]
pub struct Vault {
    cipher: Arc<chacha20poly1305::XChaCha20Poly1305>,
    state: Arc<dyn StateStore>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(***)")
    }
}

impl Vault {
    /// A vault with `key` (32 bytes, base64) over `state`.
    pub fn new(key_b64: &str, state: Arc<dyn StateStore>) -> anyhow::Result<Self> {
        use base64::Engine;
        use chacha20poly1305::KeyInit;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_b64.trim())
            .context("the secret key is not base64")?;
        if key.len() != 32 {
            bail!(
                "the secret key must be 32 bytes (base64 of `head -c 32 /dev/urandom`), not {}",
                key.len()
            );
        }
        let cipher = chacha20poly1305::XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| anyhow::anyhow!("bad secret key"))?;
        Ok(Vault {
            cipher: Arc::new(cipher),
            state,
        })
    }

    /// The operator's key: `WEFT_SECRET_KEY`, else the key file, else none.
    pub fn key_from(key_file: Option<&Path>) -> anyhow::Result<Option<String>> {
        if let Ok(k) = std::env::var("WEFT_SECRET_KEY")
            && !k.is_empty()
        {
            return Ok(Some(k));
        }
        match key_file {
            Some(p) => Ok(Some(std::fs::read_to_string(p).with_context(|| {
                format!("reading the secret key file {}", p.display())
            })?)),
            None => Ok(None),
        }
    }

    fn id(tenant: &str, name: &str) -> String {
        format!("{tenant}/{name}")
    }

    /// Seals and stores `value` as the tenant's secret `name`.
    pub fn put(&self, tenant: &str, name: &str, value: &str) -> anyhow::Result<()> {
        use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload};
        let id = Self::id(tenant, name);
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // The ID is authenticated: a sealed value moved to another tenant's
        // key does not open.
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret"))?;
        let mut doc = nonce.to_vec();
        doc.extend_from_slice(&sealed);
        self.state.doc_put(SECRET_DOC, &id, &doc)
    }

    /// Opens the tenant's secret `name`, if it has one.
    pub fn get(&self, tenant: &str, name: &str) -> anyhow::Result<Option<Secret>> {
        use chacha20poly1305::aead::{Aead, Payload};
        let id = Self::id(tenant, name);
        let Some(doc) = self.state.doc_get(SECRET_DOC, &id)? else {
            return Ok(None);
        };
        if doc.len() < 24 {
            bail!("secret {name:?} of tenant {tenant:?} is damaged");
        }
        let (nonce, sealed) = doc.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                chacha20poly1305::XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "secret {name:?} of tenant {tenant:?} does not open with this key (was the key changed?)"
                )
            })?;
        Ok(Some(Secret(
            String::from_utf8(plain).context("secret is not UTF-8")?,
        )))
    }

    /// The names of the tenant's secrets (never their values).
    pub fn names(&self, tenant: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .state
            .doc_list(SECRET_DOC, &format!("{tenant}/"))?
            .into_iter()
            .map(|(id, _)| id[tenant.len() + 1..].to_owned())
            .collect())
    }

    /// Deletes the tenant's secret `name`; whether it existed.
    pub fn delete(&self, tenant: &str, name: &str) -> anyhow::Result<bool> {
        self.state.doc_delete(SECRET_DOC, &Self::id(tenant, name))
    }
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
        Ok(SecretStore {
            file,
            ..Default::default()
        })
    }

    /// A store with the given file entries (for tests and embedding).
    pub fn from_map(file: BTreeMap<String, String>) -> Self {
        SecretStore {
            file,
            ..Default::default()
        }
    }

    /// This store with tenants' sealed secrets.
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The vault of tenant secrets, if the operator supplied a key.
    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    /// This store as `tenant` sees it: `{ secret = "name" }` is the
    /// tenant's own sealed secret `name` if it has one, else the file's.
    pub fn for_tenant(&self, tenant: &str) -> SecretStore {
        SecretStore {
            tenant: Some(tenant.to_owned()),
            ..self.clone()
        }
    }

    /// Resolves one reference, or says which variable or key is missing.
    pub fn resolve(&self, r: &SecretRef) -> anyhow::Result<Secret> {
        match r {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                Ok(_) => bail!("environment variable {name} is empty"),
                Err(_) => bail!("environment variable {name} is not set"),
            },
            SecretRef::Sealed(name) => {
                let (Some(vault), Some(tenant)) = (&self.vault, &self.tenant) else {
                    bail!("sealed secret {name:?}: only a tenant's flows have sealed secrets");
                };
                vault.get(tenant, name)?.with_context(|| {
                    format!("tenant {tenant:?} has no secret {name:?} (write it with PUT /v1/tenants/{tenant}/secrets/{name})")
                })
            }
            SecretRef::Secret(key) => {
                if let (Some(vault), Some(tenant)) = (&self.vault, &self.tenant)
                    && let Some(s) = vault.get(tenant, key)?
                {
                    return Ok(s);
                }
                self.file.get(key).cloned().map(Secret).with_context(|| {
                    match &self.tenant {
                        Some(t) => format!(
                            "secret {key:?} is neither a secret of tenant {t:?} nor in the secrets file"
                        ),
                        None => format!("secret {key:?} is not in the secrets file"),
                    }
                })
            }
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
