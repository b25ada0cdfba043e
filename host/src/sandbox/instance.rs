//! Instances: a compiled component of either world ([`HandlerComponent`]), the sandbox
//! an instance runs in ([`Sandbox`]), and a live instance ([`HandlerInstance`]) with
//! its calls, each bounded in time by epoch interruption and in memory by its store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};

use super::bindings::types::{Context, Error as HandlerError, Request, Response, Tensor};
use super::bindings::{Handler, HandlerPre, Pipeline, PipelinePre};
use super::engine::{Limits, RuntimeError};
use super::epoch::{EPOCH_TICK, EpochTicker};
use super::guest_io::{
    CallBudget, CoarseMonotonicClock, CoarseWallClock, GuestOutput, ModelLabels,
};
use super::models::Models;
use super::state::HostState;
use crate::slots::Slots;
use crate::worker::stream::PieceSender;

/// A component linked for one of the two worlds.
#[derive(Clone)]
pub(super) enum Pre {
    Handler(HandlerPre<HostState>),
    Pipeline(PipelinePre<HostState>),
}

/// Which world a component targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `preprocess` → the model's forward → `postprocess`.
    Handler,
    /// `handle`, calling models itself through `models.infer`.
    Pipeline,
}

/// One archive's handler, compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct HandlerComponent {
    pub(super) pre: Pre,
    pub(super) engine: Engine,
    pub(super) limits: Limits,
    pub(super) slots: Arc<Slots>,
    /// The runtime's epoch ticker (`None`: a runtime that only checks components).
    pub(super) ticker: Option<Arc<EpochTicker>>,
    /// Keeps the compiled component shared with the runtime's other versions of it.
    pub(super) _component: Arc<wasmtime::component::Component>,
}

/// Where an instance runs, what its `init` is told, and the model's own limits.
///
/// The limits are the model's (`model-config.yaml`: `handlerMemoryLimitMb`,
/// `responseTimeout`), within the runtime's [`Limits`], which bound every model.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The models a pipeline may call (`None`: none; a `handler` never calls any).
    pub models: Option<Models>,
    /// The extracted archive, preopened read-only as `/model`.
    pub model_dir: PathBuf,
    /// The context passed to `init`.
    pub context: Context,
    /// Largest linear memory of this model's instances, in bytes (capped at
    /// [`Limits::max_memory`]).
    pub max_memory: usize,
    /// Longest one call may run (capped at [`Limits::call_timeout`]).
    pub call_timeout: Duration,
    /// How the `image` interface decodes for this model (`fastImageDecode`).
    pub image_mode: crate::imaging::Mode,
}

impl Sandbox {
    /// A sandbox for `model_dir` with the runtime's default limits.
    pub fn new(model_dir: PathBuf, context: Context) -> Sandbox {
        let limits = Limits::default();
        Sandbox {
            models: None,
            model_dir,
            context,
            max_memory: limits.max_memory,
            call_timeout: limits.call_timeout,
            image_mode: Default::default(),
        }
    }
}

impl HandlerComponent {
    /// The world the component targets.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Handler(_) => World::Handler,
            Pre::Pipeline(_) => World::Pipeline,
        }
    }

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
            models: sandbox.models.clone(),
            model_calls: 0,
            request_id: String::new(),
            image_mode: sandbox.image_mode,
        };
        let call_timeout = sandbox.call_timeout.min(self.limits.call_timeout);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Instantiating runs guest code (start functions): bounded like a call.
        let busy = self.ticker.as_deref().map(EpochTicker::busy);
        store.set_epoch_deadline(deadline_ticks(call_timeout));
        let bindings = match &self.pre {
            Pre::Handler(pre) => pre.instantiate(&mut store).map(Bindings::Handler),
            Pre::Pipeline(pre) => pre.instantiate(&mut store).map(Bindings::Pipeline),
        }
        .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        drop(busy);
        let mut instance = HandlerInstance {
            store,
            bindings,
            ticker: self.ticker.clone(),
            call_timeout,
            memory_limit: sandbox.max_memory.min(self.limits.max_memory),
        };
        instance
            .call(|b, s| match b {
                Bindings::Handler(h) => h.call_init(s, &sandbox.context),
                Bindings::Pipeline(p) => p.call_init(s, &sandbox.context),
            })?
            .map_err(RuntimeError::Init)?;
        Ok(instance)
    }
}

/// A call's time bound in epoch ticks, rounded up, plus one for the tick in progress.
fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis().div_ceil(EPOCH_TICK.as_millis())).max(1) as u64 + 1
}

/// An instance's exports, of either world.
enum Bindings {
    Handler(Handler),
    Pipeline(Pipeline),
}

/// A live handler instance. Not shared: one per worker lane.
pub struct HandlerInstance {
    store: Store<HostState>,
    bindings: Bindings,
    ticker: Option<Arc<EpochTicker>>,
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
        let Bindings::Handler(_) = &self.bindings else {
            return Err(not_a("handler", "preprocess"));
        };
        self.store.data_mut().stream = stream.cloned();
        self.call(|b, s| match b {
            Bindings::Handler(h) => h.call_preprocess(s, req),
            Bindings::Pipeline(_) => Err(wasmtime::Error::msg("the world was checked above")),
        })
    }

    /// Runs `postprocess`, with the same conventions as [`Self::preprocess`].
    pub fn postprocess(
        &mut self,
        req: &Request,
        outputs: &[Tensor],
        stream: Option<&PieceSender>,
    ) -> Result<Result<Response, HandlerError>, RuntimeError> {
        let Bindings::Handler(_) = &self.bindings else {
            return Err(not_a("handler", "postprocess"));
        };
        self.store.data_mut().stream = stream.cloned();
        self.call(|b, s| match b {
            Bindings::Handler(h) => h.call_postprocess(s, req, outputs),
            Bindings::Pipeline(_) => Err(wasmtime::Error::msg("the world was checked above")),
        })
    }

    /// Runs a pipeline's `handle`, with the same conventions as [`Self::preprocess`]:
    /// its `models.infer` calls wait at most until this call's deadline.
    pub fn handle(
        &mut self,
        req: &Request,
        stream: Option<&PieceSender>,
    ) -> Result<Result<Response, HandlerError>, RuntimeError> {
        let Bindings::Pipeline(_) = &self.bindings else {
            return Err(not_a("pipeline", "handle"));
        };
        let state = self.store.data_mut();
        state.stream = stream.cloned();
        state.request_id.clone_from(&req.id);
        self.call(|b, s| match b {
            Bindings::Pipeline(p) => p.call_handle(s, req),
            Bindings::Handler(_) => Err(wasmtime::Error::msg("the world was checked above")),
        })
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, RuntimeError> {
        let _busy = self.ticker.as_deref().map(EpochTicker::busy);
        self.store
            .set_epoch_deadline(deadline_ticks(self.call_timeout));
        let state = self.store.data_mut();
        state.call_deadline = Some(Instant::now() + self.call_timeout);
        state.budget.reset();
        state.model_calls = 0;
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

/// Calling an export of the other world: the host's mistake, never the guest's.
fn not_a(world: &str, export: &str) -> RuntimeError {
    RuntimeError::Other(format!(
        "`{export}` is an export of the {world} world, which this component does not target"
    ))
}
