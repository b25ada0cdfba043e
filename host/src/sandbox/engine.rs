//! The engine: one wasmtime `Engine` and `Linker` for the process ([`HandlerRuntime`]),
//! its limits, and compiling a component into a [`HandlerComponent`] of one of the two
//! worlds, checked against it. The compiled form is cached on disk (`cache.rs`).

use super::epoch::EpochTicker;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Handler, HandlerPre, PipelinePre, models};
use super::clocks::{SandboxClocks, SandboxClocksView, monotonic_clock};
use super::instance::{HandlerComponent, Pre};
use super::state::HostState;
use crate::slots::Slots;

/// `max_handler_instances` by default: room for hundreds of single-worker model
/// versions. The pool reserves address space, not memory, for each (a few GiB each
/// of the 128 TiB a 64-bit process has).
pub const DEFAULT_MAX_INSTANCES: u32 = 1024;

/// Instances beyond the lanes' slots, for instances made outside a lane (benchmarks,
/// tests running a sandbox directly).
const SPARE_INSTANCES: u32 = 8;

/// Resource limits of every handler instance.
///
/// Defaults: 256 MiB of linear memory, 10,000 table elements, 1,024 instances in the
/// pool (`max_handler_instances`), a 120 s time bound per call (TorchServe's default
/// `responseTimeout`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub max_memory: usize,
    /// Largest table an instance may grow to, in elements.
    pub max_table_elements: usize,
    /// Instances that may exist at once (all models' lanes together). Sized up front
    /// because the pooling allocator reserves their slots when the engine is made;
    /// lanes hold them as [`crate::slots::Slot`]s.
    pub max_instances: u32,
    /// Longest a single `init`, `preprocess` or `postprocess` call may run.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: 256 << 20,
            max_table_elements: 10_000,
            max_instances: DEFAULT_MAX_INSTANCES,
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
    /// A component, but not one of the `wasmserve:handler` worlds.
    #[error(
        "the handler component does not fit the wasmserve:handler@0.1.3 `handler` or `pipeline` world (any 0.1.z fits): {0}; build it against wit/handler.wit (the Rust SDK handlers/sdk does this)"
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

/// Compiles and runs handler components. One per process.
pub struct HandlerRuntime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
    pub(super) limits: Limits,
    /// Where compiled components are kept between runs (`None`: never cached).
    pub(super) cache_dir: Option<PathBuf>,
    /// The components loaded now, by cache key: versions of the same handler share one
    /// compiled copy (its code mapped once), however many are registered.
    pub(super) loaded:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<Component>>>,
    /// The epoch ticker of a serving runtime (stopped when the runtime is dropped).
    pub(super) ticker: Option<Arc<EpochTicker>>,
    /// The lanes' places in the instance pool.
    pub(super) slots: Arc<Slots>,
}

impl HandlerRuntime {
    /// A runtime for serving: pooling allocator sized by `limits`, epoch interruption on,
    /// compiled components cached in `cache_dir`.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::default();
        let total = limits.max_instances + SPARE_INSTANCES;
        pool.total_component_instances(total)
            .total_core_instances(total * 8)
            .max_core_instances_per_component(16)
            .total_memories(total * 2)
            .max_memories_per_component(4)
            .total_tables(total * 8)
            .max_tables_per_component(8)
            .max_memory_size(limits.max_memory)
            .table_elements(limits.max_table_elements);
        let mut config = base_config();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let mut runtime = Self::with_config(&config, limits, cache_dir).map_err(|e| {
            RuntimeError::Other(format!(
                "{e}; the instance pool reserves address space for max_handler_instances \
                 instances: lower it if this machine limits virtual memory (ulimit -v)"
            ))
        })?;

        let ticker = EpochTicker::start(runtime.engine.clone())
            .map_err(|e| RuntimeError::Other(format!("cannot start the epoch ticker: {e}")))?;
        runtime.ticker = Some(ticker);
        Ok(runtime)
    }

    /// The lanes' places in the instance pool (`max_handler_instances`).
    pub fn slots(&self) -> &Arc<Slots> {
        &self.slots
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
        // The sandbox's own monotonic clock replaces WASI's (see `SandboxClocks`).
        linker.allow_shadowing(true);
        monotonic_clock::add_to_linker::<HostState, SandboxClocks>(&mut linker, |s| {
            let deadline = s.call_deadline;
            SandboxClocksView {
                inner: wasmtime_wasi::clocks::WasiClocksCtxView {
                    ctx: s.wasi.clocks(),
                    table: &mut s.table,
                },
                deadline,
            }
        })?;
        linker.allow_shadowing(false);
        // The handler world's imports, then the one the pipeline world adds.
        Handler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        models::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(HandlerRuntime {
            engine,
            linker,
            slots: Slots::new(limits.max_instances as usize),
            limits,
            cache_dir,
            loaded: Default::default(),
            ticker: None,
        })
    }

    /// Compiles `wasm` (or loads its compiled form from the cache) and checks that it is a
    /// component exporting the `handler` world with imports this host provides.
    pub fn compile(&self, wasm: &[u8]) -> Result<HandlerComponent, RuntimeError> {
        if !is_component(wasm) {
            let what = if wasm.starts_with(b"\0asm\x01\0\0\0") {
                "it is a core WebAssembly module: `wasmserve archive --handler` makes a wasm32-wasip1 module built with the SDK into a component; or build for wasm32-wasip2"
            } else {
                "it is not WebAssembly at all"
            };
            return Err(RuntimeError::NotAComponent(what.into()));
        }
        let (component, compiled) = self.load_component(wasm)?;
        let shared = component.clone();
        let component: &Component = &component;
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        let exports_handle = component
            .component_type()
            .exports(&self.engine)
            .any(|(name, _)| name == "handle");
        let pre = if exports_handle {
            Pre::Pipeline(
                PipelinePre::new(pre)
                    .map_err(|e| RuntimeError::WrongWorld(format!("as a pipeline: {e:#}")))?,
            )
        } else {
            Pre::Handler(
                HandlerPre::new(pre).map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?,
            )
        };
        // Only a component that fits the world is worth keeping compiled.
        if let Some((path, bytes)) = compiled {
            let dir = path.parent().unwrap_or(Path::new("."));
            if let Err(e) = super::cache::write_atomically(dir, &path, &bytes) {
                tracing::warn!(
                    "cannot cache the compiled component in {}: {e}",
                    dir.display()
                );
            }
        }
        Ok(HandlerComponent {
            pre,
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            slots: self.slots.clone(),
            ticker: self.ticker.clone(),
            _component: shared,
        })
    }
}

impl Drop for HandlerRuntime {
    fn drop(&mut self) {
        if let Some(t) = &self.ticker {
            t.stop();
        }
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
    // `WASMSERVE_PERFMAP=1` writes /tmp/perf-PID.map, so that `perf report` names the
    // handlers' compiled functions (bench/profile.sh). Off by default: the map grows
    // with every component compiled.
    if std::env::var_os("WASMSERVE_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}
