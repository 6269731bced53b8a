//! The one wasmtime [`Engine`] of a weft host: component model, epoch
//! interruption driven by a ticker thread, the pooling allocator sized from
//! [`Limits`], and an on-disk cache of compiled components keyed by the
//! component's SHA-256 and the engine's compatibility hash, so that a restart
//! (or a second host process with the same build) does not recompile.
//!
//! Compiling is bounded: a component over `limits.max_component_bytes` is
//! refused before it is parsed, and when a compiler process is set
//! ([`use_compiler_process`], which the `weft` binary does with itself)
//! compilation runs in a child process that is killed after
//! `limits.compile_timeout_ms` and may not use more than
//! `limits.compile_memory_bytes` of address space ([`compile_child_main`]).
//! A library user that sets none compiles in-process, bounded by size only.

use crate::runtime::limits::Limits;
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

/// The executable that compiles components in a child process, if set.
static COMPILER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes every engine of this process compile in a child process: `exe`
/// must be a `weft` binary (it is run as `exe __compile IN OUT LIMITS`). The
/// `weft` binary calls this with itself at start.
pub fn use_compiler_process(exe: PathBuf) {
    let _ = COMPILER.set(exe);
}

fn engine_config(limits: &Limits) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(limits.stack_bytes)
        // Host functions run on the same fiber stack as the guest.
        .async_stack_size(limits.stack_bytes + (2 << 20));
    config
}

/// The child process's side of [`use_compiler_process`]: compiles the
/// component in `input` for an engine configured from `limits` (JSON) and
/// writes its serialized form to `output`, within `limits.compile_memory_bytes`
/// of address space. Returns the process's exit status.
pub fn compile_child_main(input: &Path, output: &Path, limits_json: &str) -> i32 {
    let run = || -> anyhow::Result<()> {
        let limits: Limits = serde_json::from_str(limits_json).context("reading the limits")?;
        limit_address_space(limits.compile_memory_bytes)?;
        let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        // Same compilation settings as the host's engine, without the
        // pooling allocator's reservations (they do not change the code).
        let engine = Engine::new(&engine_config(&limits)).map_err(anyhow::Error::from)?;
        let component = Component::new(&engine, &bytes).map_err(anyhow::Error::from)?;
        let serialized = component.serialize().map_err(anyhow::Error::from)?;
        std::fs::write(output, serialized).with_context(|| format!("writing {}", output.display()))
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

#[allow(unsafe_code)]
fn limit_address_space(bytes: u64) -> anyhow::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this
    // process's limit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    anyhow::ensure!(
        rc == 0,
        "setting the compiler's memory limit: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// The engine plus its ticker and compile cache.
pub struct WeftEngine {
    engine: Engine,
    limits: Limits,
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

/// How much of each linear memory slot stays resident between instances.
pub const KEEP_RESIDENT_BYTES: usize = 1 << 20;

impl WeftEngine {
    /// Creates the engine. `cache_dir`, when given, holds compiled components.
    pub fn new(limits: &Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        limits.validate()?;
        let mut config = engine_config(limits);
        let mut pool = PoolingAllocationConfig::new();
        let n = limits.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes)
            // A slot's memory and tables are reset by `memset` of the
            // pages the instance touched (found with Linux's PAGEMAP_SCAN
            // where the kernel has it), up to these sizes, instead of
            // `madvise`, whose TLB shootdowns across the worker threads
            // were a tenth of `weft run`'s CPU with many small runs.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `WEFT_PROFILE=perfmap`: guest functions named in `perf report`
        // (wasmtime writes /tmp/perf-PID.map), for profiling the host.
        if std::env::var("WEFT_PROFILE").as_deref() == Ok("perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
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
            limits: limits.clone(),
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
        if bytes.len() > self.limits.max_component_bytes {
            anyhow::bail!(
                "the component is {} bytes; the limit is {} (limits.max_component_bytes)",
                bytes.len(),
                self.limits.max_component_bytes
            );
        }
        if let Some(exe) = COMPILER.get() {
            return self
                .compile_in_child(exe, bytes, digest)
                .map(|c| (c, false));
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

    /// Compiles in a child process with the time and memory budget of the
    /// limits, then loads what it wrote (and keeps it in the cache).
    fn compile_in_child(
        &self,
        exe: &Path,
        bytes: &[u8],
        digest: &str,
    ) -> anyhow::Result<Component> {
        let work = tempfile::tempdir().context("creating a directory for the compiler")?;
        let input = work.path().join("in.wasm");
        let output = work.path().join("out.cwasm");
        std::fs::write(&input, bytes).context("writing the component for the compiler")?;
        let mut child = std::process::Command::new(exe)
            .arg("__compile")
            .arg(&input)
            .arg(&output)
            .arg(serde_json::to_string(&self.limits)?)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the compiler {}", exe.display()))?;
        let budget = Duration::from_millis(self.limits.compile_timeout_ms);
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for the compiler")? {
                break status;
            }
            if started.elapsed() >= budget {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "compiling took longer than {} ms (limits.compile_timeout_ms); the component was refused",
                    self.limits.compile_timeout_ms
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        if !status.success() {
            let out_of_memory = stderr.contains("memory allocation")
                || stderr.contains("out of memory")
                || stderr.contains("Cannot allocate memory")
                // The budget left no room for the compiler's threads' stacks
                // (`EAGAIN` from `mmap`/`clone` under `RLIMIT_AS`).
                || stderr.contains("Resource temporarily unavailable")
                || stderr.contains("unable to allocate")
                || {
                    use std::os::unix::process::ExitStatusExt;
                    status.signal() == Some(libc::SIGABRT) || status.signal() == Some(libc::SIGSEGV)
                };
            if out_of_memory {
                anyhow::bail!(
                    "compiling needed more than {} bytes of memory (limits.compile_memory_bytes); the component was refused",
                    self.limits.compile_memory_bytes
                );
            }
            anyhow::bail!("{}", stderr.trim());
        }
        let component = self.deserialize(&output)?;
        if let Some(path) = self.cache_path(digest) {
            // Moved into place whole; another process may have put the same
            // entry there meanwhile, which is fine.
            let tmp = path.with_extension(format!("tmp-child-{}", std::process::id()));
            if let Err(e) = std::fs::copy(&output, &tmp).and_then(|_| std::fs::rename(&tmp, &path))
            {
                tracing::warn!(path = %path.display(), error = %e, "could not write compile cache");
            }
        }
        Ok(component)
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, path: &Path) -> anyhow::Result<Component> {
        // SAFETY: files in the cache directory are written only by
        // `compile` above, from components this engine (or the compiler
        // child it started, with the same settings) compiled, and named by
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
