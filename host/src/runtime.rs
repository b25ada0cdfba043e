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
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::guest_io::{
    CallBudget, CoarseMonotonicClock, CoarseWallClock, GuestOutput, ModelLabels,
};
use crate::slots::Slots;
use crate::worker::stream::PieceSender;

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

/// `max_handler_instances` by default: room for hundreds of single-worker model
/// versions. The pool reserves address space, not memory, for each (a few GiB each
/// of the 128 TiB a 64-bit process has).
pub const DEFAULT_MAX_INSTANCES: u32 = 1024;

/// Instances beyond the lanes' slots, for instances made outside a lane (benchmarks,
/// tests running a sandbox directly).
const SPARE_INSTANCES: u32 = 8;

/// How often the epoch ticker advances; the time bound of a call is rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

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
    /// A component, but not one of the `wasmserve:handler` world.
    #[error(
        "the handler component does not fit the wasmserve:handler@0.1.1 world (any 0.1.z fits): {0}; build it against wit/handler.wit (the Rust SDK handlers/sdk does this)"
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
    /// The model and version the instance serves: the labels the host puts on its log
    /// lines and metrics (a guest cannot override them).
    labels: Arc<ModelLabels>,
    /// What the current call may still log and record (reset at every call).
    budget: Arc<CallBudget>,
    /// When the current call must end: sleeps inside the guest are cut short at it, so
    /// that a guest waiting in a host call cannot outlive its time limit.
    call_deadline: Option<Instant>,
    /// Where the current request's intermediate responses go (`None`: its caller wants
    /// one answer, and they are dropped).
    stream: Option<PieceSender>,
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
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        if self.budget.take_log_line() {
            crate::guest_io::model_log(&self.labels, level, "log", &message);
        }
    }

    fn metric(&mut self, name: String, value: f64, unit: String, labels: Vec<(String, String)>) {
        if self.budget.take_metric() {
            crate::metrics::handler_metric(&self.labels, &name, value, &unit, &labels);
        }
    }
}

/// The `streaming` interface: a piece of the current request's answer, queued for its
/// client (see `worker::stream`), waiting within the call's deadline while it is full.
impl self::wasmserve::handler::streaming::Host for HostState {
    fn send_intermediate(&mut self, response: Response) -> Result<(), String> {
        match &self.stream {
            None => Ok(()),
            Some(stream) => stream
                .send(response, self.call_deadline)
                .map_err(|e| e.to_string()),
        }
    }
}

use self::wasmserve::handler::image::Image as WitImage;

fn to_wit(img: wasmserve_handler::vision::Image) -> WitImage {
    WitImage {
        width: img.width,
        height: img.height,
        channels: img.channels as u8,
        pixels: img.pixels,
    }
}

/// The `image` interface: the SDK's image code, run natively on the handler's behalf.
/// Decoding is bounded by the SDK's pixel limits, resizing by the same limit on the
/// target size: a host call cannot be interrupted, so its work must be bounded.
impl self::wasmserve::handler::image::Host for HostState {
    fn decode(&mut self, data: Vec<u8>, channels: u8) -> Result<WitImage, String> {
        wasmserve_handler::vision::native::decode(&data, channels.into()).map(to_wit)
    }

    fn resize(&mut self, img: WitImage, width: u32, height: u32) -> Result<WitImage, String> {
        use wasmserve_handler::vision::{MAX_PIXELS, MAX_SIDE};
        if width > MAX_SIDE || height > MAX_SIDE || width as u64 * height as u64 > MAX_PIXELS {
            return Err(format!(
                "cannot resize to {width}x{height}: over the size limit"
            ));
        }
        let expected = img.width as u64 * img.height as u64 * img.channels as u64;
        if img.pixels.len() as u64 != expected {
            return Err(format!(
                "a {}x{} image with {} channel(s) needs {expected} bytes, not {}",
                img.width,
                img.height,
                img.channels,
                img.pixels.len()
            ));
        }
        let img = wasmserve_handler::vision::Image {
            width: img.width,
            height: img.height,
            channels: img.channels.into(),
            pixels: img.pixels,
        };
        img.resize_natively(width, height)
            .map(to_wit)
            .map_err(|e| e.to_string())
    }

    fn decode_resize_shorter(
        &mut self,
        data: Vec<u8>,
        channels: u8,
        size: u32,
    ) -> Result<WitImage, String> {
        use wasmserve_handler::vision::MAX_SIDE;
        if size == 0 || size > MAX_SIDE {
            return Err(format!("cannot resize the shorter side to {size}"));
        }
        let img = wasmserve_handler::vision::native::decode(&data, channels.into())?;
        let (w, h) = (img.width as u64, img.height as u64);
        let long = (size as u64 * w.max(h) / w.min(h).max(1)).max(1);
        if long > MAX_SIDE as u64 {
            return Err(format!(
                "a {w}x{h} image resized to a shorter side of {size} is too large"
            ));
        }
        img.resize_shorter_side(size)
            .map(to_wit)
            .map_err(|e| e.to_string())
    }
}

/// `wasi:clocks/monotonic-clock` as the sandbox has it: the coarse clock of the
/// instance's `WasiCtx`, and no sleeping past the current call's deadline.
struct SandboxClocks;

impl wasmtime::component::HasData for SandboxClocks {
    type Data<'a> = SandboxClocksView<'a>;
}

struct SandboxClocksView<'a> {
    inner: wasmtime_wasi::clocks::WasiClocksCtxView<'a>,
    deadline: Option<Instant>,
}

impl SandboxClocksView<'_> {
    /// Allows a sleep of `nanos` only if it ends before the call's deadline: a guest
    /// that would sleep past it fails at once (a host call cannot be interrupted).
    fn check(&self, nanos: u64) -> wasmtime::Result<u64> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if Duration::from_nanos(nanos) > left {
                return Err(wasmtime::Error::msg(format!(
                    "it tried to sleep {:.3} s with {:.3} s left of its time limit (responseTimeout)",
                    nanos as f64 / 1e9,
                    left.as_secs_f64()
                )));
            }
        }
        Ok(nanos)
    }
}

use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

impl monotonic_clock::Host for SandboxClocksView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        self.inner.now()
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        self.inner.resolution()
    }

    fn subscribe_instant(
        &mut self,
        when: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        let now = self.inner.now()?;
        let nanos = self.check(when.saturating_sub(now))?;
        self.inner.subscribe_duration(nanos)
    }

    fn subscribe_duration(
        &mut self,
        nanos: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        let nanos = self.check(nanos)?;
        self.inner.subscribe_duration(nanos)
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
    /// The lanes' places in the instance pool.
    slots: Arc<Slots>,
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
        let runtime = Self::with_config(&config, limits, cache_dir).map_err(|e| {
            RuntimeError::Other(format!(
                "{e}; the instance pool reserves address space for max_handler_instances \
                 instances: lower it if this machine limits virtual memory (ulimit -v)"
            ))
        })?;

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
        Handler::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)?;
        Ok(HandlerRuntime {
            engine,
            linker,
            slots: Slots::new(limits.max_instances as usize),
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
        let (component, compiled) = self.load_component(wasm)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        let pre = HandlerPre::new(pre).map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
        // Only a component that fits the world is worth keeping compiled.
        if let Some((path, bytes)) = compiled {
            let dir = path.parent().unwrap_or(Path::new("."));
            if let Err(e) = write_atomically(dir, &path, &bytes) {
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
        })
    }

    /// The compiled component, from the cache or compiled now; when compiled now and a
    /// cache is configured, also where to cache it and the bytes (the caller writes them
    /// once the component passed its checks).
    #[allow(clippy::type_complexity)]
    fn load_component(
        &self,
        wasm: &[u8],
    ) -> Result<(Component, Option<(PathBuf, Vec<u8>)>), RuntimeError> {
        let Some(dir) = &self.cache_dir else {
            let component = Component::new(&self.engine, wasm)
                .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
            return Ok((component, None));
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(wasm)));
        if path.is_file() {
            // SAFETY: the cache holds only files this runtime wrote with
            // `Engine::precompile_component`, under a key that includes the engine's
            // compatibility hash; wasmtime checks the header again on load.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, None)),
                Err(e) => tracing::warn!("ignoring cached component {}: {e:#}", path.display()),
            }
        }
        let compiled = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| RuntimeError::NotAComponent(format!("{e:#}")))?;
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(RuntimeError::from)?;
        Ok((component, Some((path, compiled))))
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
    // `WASMSERVE_PERFMAP=1` writes /tmp/perf-PID.map, so that `perf report` names the
    // handlers' compiled functions (bench/profile.sh). Off by default: the map grows
    // with every component compiled.
    if std::env::var_os("WASMSERVE_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
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
    slots: Arc<Slots>,
}

/// Where an instance runs, what its `init` is told, and the model's own limits.
///
/// The limits are the model's (`model-config.yaml`: `handlerMemoryLimitMb`,
/// `responseTimeout`), within the runtime's [`Limits`], which bound every model.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The extracted archive, preopened read-only as `/model`.
    pub model_dir: PathBuf,
    /// The context passed to `init`.
    pub context: Context,
    /// Largest linear memory of this model's instances, in bytes (capped at
    /// [`Limits::max_memory`]).
    pub max_memory: usize,
    /// Longest one call may run (capped at [`Limits::call_timeout`]).
    pub call_timeout: Duration,
}

impl Sandbox {
    /// A sandbox for `model_dir` with the runtime's default limits.
    pub fn new(model_dir: PathBuf, context: Context) -> Sandbox {
        let limits = Limits::default();
        Sandbox {
            model_dir,
            context,
            max_memory: limits.max_memory,
            call_timeout: limits.call_timeout,
        }
    }
}

impl HandlerComponent {
    /// The instance slots of the runtime this component was compiled in.
    pub fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    /// A fresh, initialised instance in its own sandbox.
    pub fn instantiate(&self, sandbox: &Sandbox) -> Result<HandlerInstance, RuntimeError> {
        let labels = Arc::new(ModelLabels {
            model_name: sandbox.context.model_name.clone(),
            model_version: sandbox.context.model_version.clone(),
        });
        let budget = Arc::new(CallBudget::default());
        let mut wasi = WasiCtx::builder();
        wasi.allow_blocking_current_thread(true)
            .wall_clock(CoarseWallClock)
            .monotonic_clock(CoarseMonotonicClock::default())
            .stdout(GuestOutput::new("stdout", labels.clone(), budget.clone()))
            .stderr(GuestOutput::new("stderr", labels.clone(), budget.clone()))
            .preopened_dir(&sandbox.model_dir, "/model", FsPerms::ReadOnly)
            .map_err(|e| {
                RuntimeError::Other(format!(
                    "cannot open {}: {e:#}",
                    sandbox.model_dir.display()
                ))
            })?;
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(sandbox.max_memory.min(self.limits.max_memory))
            .table_elements(self.limits.max_table_elements)
            .instances(32)
            // A failed `memory.grow` traps instead of returning -1, so that the error
            // names the limit (a guest allocator would abort with `unreachable`).
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            labels,
            budget,
            call_deadline: None,
            stream: None,
        };
        let call_timeout = sandbox.call_timeout.min(self.limits.call_timeout);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks(call_timeout));
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        let mut instance = HandlerInstance {
            store,
            bindings,
            call_timeout,
            memory_limit: sandbox.max_memory.min(self.limits.max_memory),
        };
        instance
            .call(|b, s| b.call_init(s, &sandbox.context))?
            .map_err(RuntimeError::Init)?;
        Ok(instance)
    }
}

/// A call's time bound in epoch ticks, rounded up, plus one for the tick in progress.
fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis().div_ceil(EPOCH_TICK.as_millis())).max(1) as u64 + 1
}

/// A live handler instance. Not shared: one per worker lane.
pub struct HandlerInstance {
    store: Store<HostState>,
    bindings: Handler,
    /// The time bound of each call.
    call_timeout: Duration,
    /// The linear memory cap, for error messages.
    memory_limit: usize,
}

impl HandlerInstance {
    /// Runs `preprocess`. `Ok(Err(_))` is the handler's own error for this request;
    /// `Err(_)` means the instance trapped and must be replaced. The handler's
    /// intermediate responses go to `stream` (dropped when `None`).
    pub fn preprocess(
        &mut self,
        req: &Request,
        stream: Option<&PieceSender>,
    ) -> Result<Result<Vec<Tensor>, HandlerError>, RuntimeError> {
        self.store.data_mut().stream = stream.cloned();
        self.call(|b, s| b.call_preprocess(s, req))
    }

    /// Runs `postprocess`, with the same conventions as [`Self::preprocess`].
    pub fn postprocess(
        &mut self,
        req: &Request,
        outputs: &[Tensor],
        stream: Option<&PieceSender>,
    ) -> Result<Result<Response, HandlerError>, RuntimeError> {
        self.store.data_mut().stream = stream.cloned();
        self.call(|b, s| b.call_postprocess(s, req, outputs))
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&Handler, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, RuntimeError> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.call_timeout));
        let state = self.store.data_mut();
        state.call_deadline = Some(Instant::now() + self.call_timeout);
        state.budget.reset();
        let (timeout, memory) = (self.call_timeout, self.memory_limit);
        let result = f(&self.bindings, &mut self.store);
        let state = self.store.data_mut();
        state.call_deadline = None;
        state.stream = None;
        state.budget.finish(&state.labels);
        result.map_err(|e| {
            let msg = match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => format!(
                    "it ran past its time limit of {:.1} s (responseTimeout)",
                    timeout.as_secs_f64()
                ),
                Some(trap) => trap.to_string(),
                None if format!("{e:#}").contains("growing memory") => format!(
                    "it ran out of memory: its limit is {} MiB (handlerMemoryLimitMb)",
                    memory >> 20
                ),
                // The cause, without the wasm backtrace wasmtime adds as context.
                None => e.root_cause().to_string(),
            };
            RuntimeError::Trap(msg)
        })
    }
}
