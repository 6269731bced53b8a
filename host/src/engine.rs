//! The one wasmtime [`Engine`] of a weft host: component model, epoch
//! interruption driven by a ticker thread, the pooling allocator sized from
//! [`Limits`], and an on-disk cache of compiled components keyed by the
//! component's SHA-256 and the engine's compatibility hash, so that a restart
//! (or a second host process with the same build) does not recompile.

use crate::limits::Limits;
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Deadlines are checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine plus its ticker and compile cache.
pub struct WeftEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    compat: String,
    ticker: Arc<AtomicBool>,
}

impl Drop for WeftEngine {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

/// The hex SHA-256 of `bytes`: a component's identity in the cache and the
/// registry.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl WeftEngine {
    /// Creates the engine. `cache_dir`, when given, holds compiled components.
    pub fn new(limits: &Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        limits.validate()?;
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            // Host functions run on the same fiber stack as the guest.
            .async_stack_size(limits.stack_bytes + (2 << 20));
        let mut pool = PoolingAllocationConfig::new();
        let n = limits.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::Error::from(e).context("creating the wasmtime engine"))?;

        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = format!("{:016x}", h.finish());

        let ticker = Arc::new(AtomicBool::new(false));
        let stop = ticker.clone();
        let e = engine.clone();
        std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating compile cache {}", dir.display()))?;
        }
        Ok(WeftEngine {
            engine,
            cache_dir,
            compat,
            ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where the compiled form of a component with `digest` is cached.
    pub fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.compat)))
    }

    /// Compiles `bytes` (blocking: call it off the async runtime), or loads
    /// the cached compilation. Returns the component and whether the cache
    /// was used.
    pub fn compile(&self, bytes: &[u8], digest: &str) -> anyhow::Result<(Component, bool)> {
        if let Some(path) = self.cache_path(digest)
            && path.exists()
        {
            match self.deserialize(&path) {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry");
                }
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(anyhow::Error::from)?;
        if let Some(path) = self.cache_path(digest)
            && let Err(e) = write_cache(&component, &path)
        {
            // A cache that cannot be written costs a recompile next time,
            // nothing more.
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "could not write compile cache");
        }
        Ok((component, false))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &Path) -> anyhow::Result<Component> {
        // SAFETY: files in the cache directory are written only by
        // `compile` above, from components this engine compiled, and named by
        // the engine's compatibility hash; wasmtime also checks the header.
        // The cache directory must not be writable by anyone but the host's
        // operator.
        unsafe { Component::deserialize_file(&self.engine, path) }.map_err(anyhow::Error::from)
    }
}

/// Writes the compiled form atomically: to a file of this call's own, then
/// renamed into place, so concurrent compiles of one component never see a
/// half-written entry.
fn write_cache(component: &Component, path: &Path) -> anyhow::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serialized = component
        .serialize()
        .map_err(|e| anyhow::Error::from(e).context("serializing compiled component"))?;
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, serialized).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
}
