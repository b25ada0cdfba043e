//! The handler runtime: compiles handler components with wasmtime, checks that they
//! target the `wasmserve:handler` world, and runs sandboxed instances of them.
//!
//! One [`HandlerRuntime`] (one wasmtime `Engine`) serves the whole process. A
//! [`HandlerComponent`] is one archive's compiled handler, linked once (`InstancePre`)
//! and instantiated per worker lane as a [`HandlerInstance`], each with its own `Store`.
//!
//! The sandbox of an instance: WASI preview 2 with no environment, no arguments, no
//! network, no stdin; the archive's extracted files read-only under `/model`; linear
//! memory capped by [`Limits::max_memory`]; each call bounded in time by epoch
//! interruption. A trap poisons an instance: the caller drops it and instantiates afresh.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
});

// bindgen puts the world's `use`d types (Tensor, Request, Response, Error, Context) at
// this module's root; these two are only reachable through the interface.
pub use self::wasmserve::handler::types::{Dtype, Part};
/// A handler's own error for one request (the WIT `error` record).
pub type HandlerError = Error;
use self::wasmserve::handler::host::Level;

/// How often the epoch ticker advances; the time bound of a call is rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource limits of every handler instance.
///
/// Defaults: 256 MiB of linear memory, 10,000 table elements, 64 concurrent instances
/// in the pool, a 120 s time bound per call (TorchServe's default `responseTimeout`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub max_memory: usize,
    /// Largest table an instance may grow to, in elements.
    pub max_table_elements: usize,
    /// Instances that may exist at once (all models' lanes together). Sized up front
    /// because the pooling allocator reserves their slots when the engine is made.
    pub max_instances: u32,
    /// Longest a single `init`, `preprocess` or `postprocess` call may run.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: 256 << 20,
            max_table_elements: 10_000,
            max_instances: 64,
            call_timeout: Duration::from_secs(120),
        }
    }
}

/// Errors of compiling, linking and running handler components.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a WebAssembly component (a core module, or not wasm at all).
    #[error("the handler is not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but not one of the `wasmserve:handler` world.
    #[error(
        "the handler component does not fit the wasmserve:handler@0.1.0 world: {0}; build it against wit/handler.wit (the Rust SDK handlers/sdk does this)"
    )]
    WrongWorld(String),
    /// Instantiation failed (for instance, the instance pool is full).
    #[error("cannot instantiate the handler: {0}")]
    Instantiate(String),
    /// The handler's `init` returned an error.
    #[error("the handler's init failed: {0}")]
    Init(String),
    /// The guest trapped (a panic, an out-of-bounds access, a timeout, …). The instance
    /// is unusable afterwards.
    #[error("the handler crashed: {0}")]
    Trap(String),
    /// Anything else from the runtime or the file system.
    #[error("{0}")]
    Other(String),
}

impl From<wasmtime::Error> for RuntimeError {
    fn from(e: wasmtime::Error) -> Self {
        RuntimeError::Other(format!("{e:#}"))
    }
}

/// The per-store state a handler instance sees through its imports.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// `model/version`, prefixed to the handler's log lines.
    log_target: Arc<str>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl self::wasmserve::handler::types::Host for HostState {}

impl self::wasmserve::handler::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let target = &*self.log_target;
        match level {
            Level::Trace => tracing::trace!(model = target, "{message}"),
            Level::Debug => tracing::debug!(model = target, "{message}"),
            Level::Info => tracing::info!(model = target, "{message}"),
            Level::Warn => tracing::warn!(model = target, "{message}"),
            Level::Error => tracing::error!(model = target, "{message}"),
        }
    }

    fn metric(&mut self, name: String, value: f64, unit: String, _labels: Vec<(String, String)>) {
        tracing::debug!(model = &*self.log_target, "metric {name} = {value} {unit}");
    }
}

/// Compiles and runs handler components. One per process.
pub struct HandlerRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    /// Where compiled components are kept between runs (`None`: never cached).
    cache_dir: Option<PathBuf>,
    /// Stops the epoch ticker thread when the runtime is dropped.
    ticker_stop: Arc<AtomicBool>,
}

impl HandlerRuntime {
    /// A runtime for serving: pooling allocator sized by `limits`, epoch interruption on,
    /// compiled components cached in `cache_dir`.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances * 8)
            .max_core_instances_per_component(16)
            .total_memories(limits.max_instances * 2)
            .max_memories_per_component(4)
            .total_tables(limits.max_instances * 8)
            .max_tables_per_component(8)
            .max_memory_size(limits.max_memory)
            .table_elements(limits.max_table_elements);
        let mut config = base_config();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let runtime = Self::with_config(&config, limits, cache_dir)?;

        let engine = runtime.engine.clone();
        let stop = runtime.ticker_stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Other(format!("cannot start the epoch ticker: {e}")))?;
        Ok(runtime)
    }

    /// A runtime that only compiles and checks components (the archiver's): on-demand
    /// allocation, no epoch ticker, no cache.
    pub fn for_checking() -> Result<Self, RuntimeError> {
        Self::with_config(&base_config(), Limits::default(), None)
    }

    fn with_config(
        config: &Config,
        limits: Limits,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, RuntimeError> {
        let engine = Engine::new(config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Handler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(HandlerRuntime {
            engine,
            linker,
            limits,
            cache_dir,
            ticker_stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Compiles `wasm` (or loads its compiled form from the cache) and checks that it is a
    /// component exporting the `handler` world with imports this host provides.
    pub fn compile(&self, wasm: &[u8]) -> Result<HandlerComponent, RuntimeError> {
        if !is_component(wasm) {
            let what = if wasm.starts_with(b"\0asm\x01\0\0\0") {
                "it is a core WebAssembly module; build for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
            } else {
                "it is not WebAssembly at all"
            };
            return Err(RuntimeError::NotAComponent(what.into()));
        }
        let component = self.load_component(wasm)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        let pre = HandlerPre::new(pre).map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        Ok(HandlerComponent {
            pre,
            engine: self.engine.clone(),
            limits: self.limits.clone(),
        })
    }

    fn load_component(&self, wasm: &[u8]) -> Result<Component, RuntimeError> {
        let compile = || {
            Component::new(&self.engine, wasm)
                .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))
        };
        let Some(dir) = &self.cache_dir else {
            return compile();
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(wasm)));
        if path.is_file() {
            // SAFETY: the cache holds only files this function wrote with
            // `Engine::precompile_component`, under a key that includes the engine's
            // compatibility hash; wasmtime checks the header again on load.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!("ignoring cached component {}: {e:#}", path.display()),
            }
        }
        let compiled = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
        if let Err(e) = write_atomically(dir, &path, &compiled) {
            tracing::warn!(
                "cannot cache the compiled component in {}: {e}",
                dir.display()
            );
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(RuntimeError::from)
    }

    fn cache_key(&self, wasm: &[u8]) -> String {
        use sha2::Digest;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let digest = sha2::Sha256::digest(wasm);
        format!("{:x}-{:016x}", digest, engine_hash.finish())
    }
}

impl Drop for HandlerRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Whether `bytes` start with the header of a WebAssembly component (magic, then
/// version 0x0d and layer 1), as opposed to a core module (version 1, layer 0).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm\x0d\0\x01\0")
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Plain synchronous calls only: the component-model async machinery makes them
    // much slower (wasmtime issue 12836).
    config.concurrency_support(false);
    config
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// One archive's handler, compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct HandlerComponent {
    pre: HandlerPre<HostState>,
    engine: Engine,
    limits: Limits,
}

/// Where an instance runs and what its `init` is told.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The extracted archive, preopened read-only as `/model`.
    pub model_dir: PathBuf,
    /// The context passed to `init`.
    pub context: Context,
}

impl HandlerComponent {
    /// A fresh, initialised instance in its own sandbox.
    pub fn instantiate(&self, sandbox: &Sandbox) -> Result<HandlerInstance, RuntimeError> {
        let mut wasi = WasiCtx::builder();
        wasi.allow_blocking_current_thread(true)
            .preopened_dir(&sandbox.model_dir, "/model", FsPerms::ReadOnly)
            .map_err(|e| {
                RuntimeError::Other(format!(
                    "cannot open {}: {e:#}",
                    sandbox.model_dir.display()
                ))
            })?;
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory)
            .table_elements(self.limits.max_table_elements)
            .instances(32)
            .build();
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            log_target: format!(
                "{}/{}",
                sandbox.context.model_name, sandbox.context.model_version
            )
            .into(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.deadline_ticks());
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        let mut instance = HandlerInstance {
            store,
            bindings,
            deadline: self.deadline_ticks(),
        };
        instance
            .call(|b, s| b.call_init(s, &sandbox.context))?
            .map_err(RuntimeError::Init)?;
        Ok(instance)
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }
}

/// A live handler instance. Not shared: one per worker lane.
pub struct HandlerInstance {
    store: Store<HostState>,
    bindings: Handler,
    deadline: u64,
}

impl HandlerInstance {
    /// Runs `preprocess`. `Ok(Err(_))` is the handler's own error for this request;
    /// `Err(_)` means the instance trapped and must be replaced.
    pub fn preprocess(
        &mut self,
        req: &Request,
    ) -> Result<Result<Vec<Tensor>, HandlerError>, RuntimeError> {
        self.call(|b, s| b.call_preprocess(s, req))
    }

    /// Runs `postprocess`, with the same error convention as [`Self::preprocess`].
    pub fn postprocess(
        &mut self,
        req: &Request,
        outputs: &[Tensor],
    ) -> Result<Result<Response, HandlerError>, RuntimeError> {
        self.call(|b, s| b.call_postprocess(s, req, outputs))
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&Handler, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, RuntimeError> {
        self.store.set_epoch_deadline(self.deadline);
        f(&self.bindings, &mut self.store).map_err(|e| {
            let msg = match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => "it ran past its time limit".to_string(),
                Some(trap) => trap.to_string(),
                None => format!("{e:#}"),
            };
            RuntimeError::Trap(msg)
        })
    }
}
