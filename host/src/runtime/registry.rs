//! The local connector registry: component files stored by digest under
//! `{data_dir}/connectors/`, indexed by `name@version` in the state store.
//! With replicas sharing the state, the bytes are in the state too, and
//! each replica's directory is a cache of them.
//!
//! `add` validates a component (it must load and describe itself),
//! precompiles it into the compile cache and registers it. A version is
//! immutable: registering the same `name@version` with different bytes is
//! refused. Flows name connectors by requirement and [`Registry::resolve`]
//! picks the highest registered match at the start of every run, so adding a
//! version rolls flows forward and pinning an exact version rolls back.

use crate::config::ConnectorRef;
use crate::runtime::connector::{Connector, Runtime};
use crate::state::{ConnectorEntry, StateStore, now_ms};
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The state-store document kind of component bytes, when replicas share
/// the state (keyed by digest).
pub const COMPONENT_DOC: &str = "component";

/// The registry of one data directory.
pub struct Registry {
    dir: PathBuf,
    state: Arc<dyn StateStore>,
    loaded: Mutex<HashMap<String, Connector>>,
}

impl Registry {
    /// The registry whose files live in `dir`.
    pub fn new(dir: PathBuf, state: Arc<dyn StateStore>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Registry {
            dir,
            state,
            loaded: Mutex::default(),
        })
    }

    /// Validates, precompiles, stores and registers the component at `file`.
    pub async fn add(
        &self,
        runtime: &Runtime,
        file: &Path,
    ) -> anyhow::Result<(ConnectorEntry, bool)> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let connector = runtime
            .load(&bytes)
            .await
            .with_context(|| format!("{} is not a usable weft connector", file.display()))?;
        let info = connector.info();
        if let Some(existing) = self
            .state
            .connectors()?
            .into_iter()
            .find(|e| e.name == info.name && e.version == info.version)
        {
            if existing.digest == connector.digest() {
                return Ok((existing, false));
            }
            bail!(
                "{}@{} is already registered with different contents (digest {}); a released version is \
                 never replaced: give the new build a new version",
                info.name,
                info.version,
                &existing.digest[..12]
            );
        }
        self.store_file(connector.digest(), &bytes)?;
        // Replicas sharing the state read the bytes from it (each keeps the
        // file, and its compiled code, as a cache of its own).
        if self.state.replica().is_some() {
            self.state
                .doc_put(COMPONENT_DOC, connector.digest(), &bytes)?;
        }
        let entry = ConnectorEntry {
            name: info.name.clone(),
            version: info.version.clone(),
            digest: connector.digest().to_owned(),
            world: connector.world().to_string(),
            added_ms: now_ms(),
        };
        self.state.register_connector(&entry)?;
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.digest.clone(), connector);
        Ok((entry, true))
    }

    /// Every registered version.
    pub fn list(&self) -> anyhow::Result<Vec<ConnectorEntry>> {
        self.state.connectors()
    }

    /// The highest registered version matching `r`.
    pub fn resolve(&self, r: &ConnectorRef) -> anyhow::Result<ConnectorEntry> {
        let all = self.state.connectors()?;
        let versions: Vec<String> = all
            .iter()
            .filter(|e| e.name == r.name)
            .map(|e| e.version.to_string())
            .collect();
        all.into_iter()
            .filter(|e| e.name == r.name && r.req.matches(&e.version))
            .max_by(|a, b| a.version.cmp(&b.version))
            .with_context(|| {
                if versions.is_empty() {
                    format!("no connector named {:?} is registered; add it with `weft connectors add FILE.wasm`", r.name)
                } else {
                    format!("no registered version of {} matches {r} (registered: {})", r.name, versions.join(", "))
                }
            })
    }

    /// The loaded connector of `entry` (compiled once per process, from the
    /// compile cache after a restart).
    pub async fn load(
        &self,
        runtime: &Runtime,
        entry: &ConnectorEntry,
    ) -> anyhow::Result<Connector> {
        if let Some(c) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&entry.digest)
        {
            return Ok(c.clone());
        }
        let path = self.file(&entry.digest);
        if !path.exists() && self.state.replica().is_some() {
            // Added through another replica.
            let bytes = self
                .state
                .doc_get(COMPONENT_DOC, &entry.digest)?
                .with_context(|| {
                    format!(
                        "{}@{}: its component is not in the state",
                        entry.name, entry.version
                    )
                })?;
            self.store_file(&entry.digest, &bytes)?;
        }
        let connector = runtime.load_file(&path).await?;
        if connector.digest() != entry.digest {
            bail!(
                "{} does not match its registered digest; the registry was modified",
                path.display()
            );
        }
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.digest.clone(), connector.clone());
        Ok(connector)
    }

    /// Writes `{digest}.wasm` (through a temporary file: never half).
    fn store_file(&self, digest: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.file(digest);
        let tmp = path.with_extension(format!("wasm.{:08x}.tmp", rand::random::<u32>()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("storing {}", path.display()))
    }

    fn file(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }
}
