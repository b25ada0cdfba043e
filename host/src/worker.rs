//! Worker lanes: the threads that turn queued requests into responses.
//!
//! A lane owns one handler instance and runs, on its own OS thread (never on the async
//! executor): take the first waiting job, gather up to `batch_size - 1` more within
//! `max_batch_delay` (TorchServe's batching), preprocess each in the sandbox, stack the
//! inputs of requests whose tensors agree in dtype and trailing shape on dimension 0,
//! run one forward on the model (shared by the lanes on the same device, or the lane's
//! own with `modulePerWorker`), split the outputs back along dimension 0 and
//! postprocess each request's slice. A failure of one request's preprocess or
//! postprocess fails that request alone; a trap replaces the lane's instance.
//!
//! The lanes of a version report on a shared [`LaneBoard`] (`worker/board.rs`): which have a working
//! instance, which are busy and since when. A request is queued only while some lane
//! can take it (else it is answered 503 at once), and the last lane to lose its
//! instance or to stop answers what is still queued: nothing waits for a lane that
//! will never come. A lane that cannot get a fresh instance is not READY and keeps
//! trying; a lane whose forward never returns is abandoned when it is stopped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tokio::sync::oneshot;

use crate::core::device::DeviceKind;
use crate::metrics::LaneTimes;
use crate::model::{self, Model};
use crate::sandbox::{
    HandlerComponent, HandlerInstance, Request, Response, RuntimeError, Sandbox, Tensor,
};
use crate::slots::Slot;

mod board;
pub mod stream;
use board::{ABANDONED, lock};
pub use board::{LaneBoard, LaneHealth, LaneState, Queued, SubmitError, abandoned_lanes};

/// Why a request failed after it reached a lane.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The handler returned an error for this request: its status and message.
    #[error("{message}")]
    Handler { status: u16, message: String },
    /// The handler trapped (panic, timeout, memory limit); its instance was replaced.
    #[error("the handler failed: {0}")]
    Crash(String),
    /// The forward failed or the model's outputs could not be split per request.
    #[error("{0}")]
    Model(String),
    /// The request's inputs do not fit the model's forward (their number or types).
    #[error("{0}")]
    Input(String),
    /// No lane can serve the request any more (scaled to zero, unregistered, or every
    /// lane without a working handler instance).
    #[error("{0}")]
    Unavailable(String),
}

/// What a request brings to the model: a request for its handler, or the forward's
/// input tensors themselves (the handler is bypassed, as Triton does).
pub enum Input {
    Request(Request),
    Tensors(Vec<Tensor>),
}

/// What comes back: the handler's response, or the forward's outputs for tensors.
#[derive(Debug)]
pub enum Output {
    Response(Response),
    Tensors(Vec<Tensor>),
}

/// One queued request.
pub struct Job {
    /// The request id, for the logs.
    pub id: String,
    pub input: Input,
    /// When it was queued: queue time is measured from here.
    pub enqueued: Instant,
    /// Where the handler's intermediate responses go, for a caller that streams.
    pub stream: Option<stream::PieceSender>,
    /// The final answer (after every piece sent to `stream`).
    pub reply: oneshot::Sender<Result<Output, PredictError>>,
}

impl Job {
    /// Whether the caller stopped waiting (its client went away, or it timed out):
    /// the job is dropped unprocessed.
    fn cancelled(&self) -> bool {
        self.reply.is_closed() || self.stream.as_ref().is_some_and(|s| s.is_closed())
    }
}

/// One device a version's lanes run on: the weights loaded there, and the sandbox
/// whose context tells the handler the device (`cuda:N`, `cpu`).
pub struct Placement {
    pub device: DeviceKind,
    /// The module the lanes on this device share; `None` for a pipeline, which calls
    /// other models instead, and for a version scaled to zero until it is woken.
    pub model: std::sync::RwLock<Option<Arc<Model>>>,
    pub sandbox: Sandbox,
}

impl Placement {
    /// The module loaded here, if any.
    pub fn model(&self) -> Option<Arc<Model>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Loads or drops the module (a version scaling to zero and back).
    pub fn set_model(&self, model: Option<Arc<Model>>) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
    }
}

/// TorchServe's `pollBatch` lock as a token in a channel: the lane holding it gathers
/// the next batch; a lane waiting for it can still be woken to stop.
pub struct Gather {
    give: crossbeam_channel::Sender<()>,
    take: Receiver<()>,
}

impl Default for Gather {
    fn default() -> Gather {
        let (give, take) = crossbeam_channel::bounded(1);
        let _ = give.send(());
        Gather { give, take }
    }
}

/// The token, given back when dropped.
struct GatherToken<'a>(&'a Gather);

impl Drop for GatherToken<'_> {
    fn drop(&mut self) {
        let _ = self.0.give.try_send(());
    }
}

/// What a lane needs; shared by all lanes of a model version.
pub struct LaneContext {
    /// The devices, at least one; lanes are spread evenly over them.
    pub placements: Vec<Placement>,
    /// `modulePerWorker`: each lane loads its own copy of the module from this file,
    /// for modules that keep state between calls.
    pub module_per_worker: Option<std::path::PathBuf>,
    /// `jitOptimize`, for the modules lanes load themselves.
    pub jit_optimize: model::JitOptimize,
    /// The TorchScript file the placements' modules come from (`None` for a pipeline).
    pub model_file: Option<std::path::PathBuf>,
    pub handler: HandlerComponent,
    /// The version's sandbox: its limits and the context of its first device.
    pub sandbox: Sandbox,
    pub batch_size: usize,
    pub max_batch_delay: Duration,
    /// libtorch intra-op threads for this lane's forwards.
    pub intra_op_threads: usize,
    /// Held by the lane gathering a batch, so that concurrent requests end up in one
    /// lane's batch instead of spread one by one over idle lanes (TorchServe's
    /// `pollBatch` lock). Not taken when `batch_size` is 1.
    pub gather: Gather,
    /// What the lanes say about themselves.
    pub board: LaneBoard,
}

impl LaneContext {
    /// The module of the first device (the source of the forward's signature), while
    /// loaded.
    pub fn model(&self) -> Option<Arc<Model>> {
        self.placements.first().and_then(Placement::model)
    }

    /// Whether the version is a pipeline (calls models, has none of its own).
    pub fn is_pipeline(&self) -> bool {
        self.model_file.is_none()
    }

    /// The placement a new lane takes: the one with the fewest of `running` (the
    /// placements of the lanes already running), the first of those on a tie.
    pub fn next_placement(&self, running: impl Iterator<Item = usize>) -> usize {
        let mut counts = vec![0usize; self.placements.len().max(1)];
        for p in running {
            if let Some(c) = counts.get_mut(p) {
                *c += 1;
            }
        }
        (0..counts.len()).min_by_key(|&i| counts[i]).unwrap_or(0)
    }

    fn placement(&self, i: usize) -> &Placement {
        &self.placements[i.min(self.placements.len() - 1)]
    }
}

/// A running lane; dropping it does not stop it, [`Lane::stop`] or [`stop_all`] does.
pub struct Lane {
    pub state: Arc<LaneState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lane {
    /// Instantiates the handler (its `init` runs here, so a failing `init` fails the
    /// start) and starts the lane's thread on `queue`, on the device of `placement`
    /// (an index into [`LaneContext::placements`]). The lane holds `slot` (its place in
    /// the instance pool) until its thread ends.
    pub fn start(
        id: usize,
        name: &str,
        ctx: Arc<LaneContext>,
        queue: Receiver<Job>,
        slot: Slot,
        placement: usize,
    ) -> Result<Lane, RuntimeError> {
        let place = ctx.placement(placement);
        let instance = ctx.handler.instantiate(&place.sandbox)?;
        let model = match &ctx.module_per_worker {
            Some(path) => Some(Arc::new(
                Model::load_with(path, place.device.torch(), ctx.jit_optimize)
                    .map_err(|e| RuntimeError::Other(e.to_string()))?,
            )),
            None => place.model(),
        };
        if model.is_none() && !ctx.is_pipeline() {
            return Err(RuntimeError::Other(
                "the model's weights are not loaded".into(),
            ));
        }
        let state = Arc::new(LaneState::new(id, placement, place.device));
        lock(&ctx.board.lanes).push(state.clone());
        let thread_state = state.clone();
        let thread_ctx = ctx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-w{id}"))
            .spawn(move || {
                let _slot = slot;
                run(
                    &thread_ctx,
                    model.as_deref(),
                    instance,
                    &queue,
                    &thread_state,
                );
                lock(&thread_ctx.board.lanes).retain(|l| !Arc::ptr_eq(l, &thread_state));
                thread_ctx.lane_gone(&queue);
                let mut exited = lock(&thread_state.exited);
                *exited = true;
                if thread_state.abandoned.load(Ordering::Acquire) {
                    ABANDONED.fetch_sub(1, Ordering::AcqRel);
                }
                drop(exited);
                thread_state.exited_cv.notify_all();
            });
        match thread {
            Ok(thread) => Ok(Lane {
                state,
                thread: Some(thread),
            }),
            Err(e) => {
                lock(&ctx.board.lanes).retain(|l| !Arc::ptr_eq(l, &state));
                Err(RuntimeError::Other(format!(
                    "cannot start a worker thread: {e}"
                )))
            }
        }
    }

    /// Asks the lane to stop after its current batch, without waiting.
    pub fn signal_stop(&self) {
        self.state.signal_stop();
    }

    /// Waits until the lane stopped, or until `deadline`: a lane still busy then (a
    /// forward that does not return) is abandoned, its thread left to end on its own.
    /// Returns whether it stopped.
    pub fn stop(mut self, deadline: Instant) -> bool {
        self.signal_stop();
        let mut exited = lock(&self.state.exited);
        while !*exited {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            exited = self
                .state
                .exited_cv
                .wait_timeout(exited, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let stopped = *exited;
        if !stopped {
            // Under the lock the thread takes when it ends, so that it sees the mark.
            self.state.abandoned.store(true, Ordering::Release);
            ABANDONED.fetch_add(1, Ordering::AcqRel);
        }
        drop(exited);
        match self.thread.take() {
            Some(t) if stopped => {
                let _ = t.join();
            }
            Some(_) => {
                tracing::error!(
                    "worker {} did not stop in time (its forward has not returned): abandoned",
                    self.state.id
                )
            }
            None => {}
        }
        stopped
    }
}

/// Stops `lanes` together: all are asked at once, then each is waited for until
/// `deadline`. Returns how many were abandoned.
pub fn stop_all(lanes: Vec<Lane>, deadline: Instant) -> usize {
    lanes.iter().for_each(Lane::signal_stop);
    lanes
        .into_iter()
        .map(|l| l.stop(deadline))
        .filter(|stopped| !stopped)
        .count()
}

fn run(
    ctx: &LaneContext,
    model: Option<&Model>,
    instance: HandlerInstance,
    queue: &Receiver<Job>,
    state: &LaneState,
) {
    tch::set_num_threads(ctx.intra_op_threads as i32);
    let sandbox = &ctx.placement(state.placement).sandbox;
    let mut instance = Some(instance);
    while !state.stopping() {
        if instance.is_none() {
            match ctx.handler.instantiate(sandbox) {
                Ok(fresh) => {
                    tracing::info!("worker {} has a working handler instance again", state.id);
                    instance = Some(fresh);
                    state.got_instance();
                }
                Err(e) => {
                    state.lost_instance(e.to_string());
                    // Retried every half second, still stoppable.
                    for _ in 0..10 {
                        if state.stopping() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    continue;
                }
            }
        }
        let batch = {
            // Blocks until there is work or a stop: an idle lane never polls.
            let _gathering = if ctx.batch_size > 1 {
                crossbeam_channel::select! {
                    recv(ctx.gather.take) -> _ => Some(GatherToken(&ctx.gather)),
                    recv(state.stop_bell()) -> _ => continue,
                }
            } else {
                None
            };
            let first = crossbeam_channel::select! {
                recv(queue) -> job => match job {
                    Ok(job) => job,
                    Err(_) => break,
                },
                recv(state.stop_bell()) -> _ => continue,
            };
            let mut batch = vec![first];
            let deadline = Instant::now() + ctx.max_batch_delay;
            while batch.len() < ctx.batch_size {
                match queue.recv_deadline(deadline) {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        match model {
            Some(model) => run_batch(ctx, model, &mut instance, batch, state, queue),
            None => run_pipeline(ctx, &mut instance, batch, state, queue),
        }
    }
    state.has_instance.store(false, Ordering::Release);
}

/// A request between preprocess and postprocess.
struct Pending {
    id: String,
    /// The handler's request (`None`: tensors in, tensors out).
    request: Option<Request>,
    stream: Option<stream::PieceSender>,
    reply: oneshot::Sender<Result<Output, PredictError>>,
    inputs: Vec<Tensor>,
    times: LaneTimes,
}

fn request_span(id: &str) -> tracing::Span {
    tracing::info_span!("request", request_id = %id)
}

fn run_batch(
    ctx: &LaneContext,
    model: &Model,
    instance: &mut Option<HandlerInstance>,
    batch: Vec<Job>,
    state: &LaneState,
    queue: &Receiver<Job>,
) {
    let batch_started = Instant::now();
    let mut pending = Vec::with_capacity(batch.len());
    for job in batch {
        if job.cancelled() {
            tracing::debug!(request_id = %job.id, "dropped from the queue: its client went away");
            continue;
        }
        let Job {
            id,
            input,
            enqueued,
            stream,
            reply: tx,
        } = job;
        let _span = request_span(&id).entered();
        let queued = enqueued.elapsed();
        tracing::debug!("queued for {} us", queued.as_micros());
        let started = Instant::now();
        let mut times = LaneTimes {
            queue: queued,
            ..Default::default()
        };
        let request = match input {
            Input::Tensors(inputs) => {
                match inputs.iter().try_for_each(model::check_tensor) {
                    Ok(()) if !inputs.is_empty() => pending.push(Pending {
                        id,
                        request: None,
                        stream,
                        reply: tx,
                        inputs,
                        times,
                    }),
                    Ok(()) => send(
                        tx,
                        Err(PredictError::Input(
                            "the request has no input tensor".into(),
                        )),
                    ),
                    Err(e) => send(tx, Err(PredictError::Input(e.to_string()))),
                }
                continue;
            }
            Input::Request(request) => request,
        };
        let Some(handler) = instance.as_mut() else {
            send(tx, Err(no_instance(state)));
            continue;
        };
        let result = handler.preprocess(&request, stream.as_ref());
        times.handler = started.elapsed();
        match result {
            // No input at all is the handler's fault (a wrong number of them may be the
            // client's, through a handler that passes what it was sent: see forward).
            Ok(Ok(inputs)) if inputs.is_empty() => send(
                tx,
                Err(PredictError::Handler {
                    status: 500,
                    message: "the handler's preprocess returned no tensor for the model's forward"
                        .into(),
                }),
            ),
            Ok(Ok(inputs)) => match inputs.iter().try_for_each(model::check_tensor) {
                Ok(()) => pending.push(Pending {
                    id,
                    request: Some(request),
                    stream,
                    reply: tx,
                    inputs,
                    times,
                }),
                Err(e) => send(
                    tx,
                    Err(PredictError::Handler {
                        status: 500,
                        message: format!(
                            "the handler's preprocess returned a malformed tensor: {e}"
                        ),
                    }),
                ),
            },
            Ok(Err(e)) => send(
                tx,
                Err(PredictError::Handler {
                    status: e.status,
                    message: e.message,
                }),
            ),
            Err(e) => {
                tracing::warn!("the handler's preprocess failed: {e}");
                send(tx, Err(PredictError::Crash(e.to_string())));
                renew(ctx, instance, state, queue);
            }
        }
    }
    let (name, version) = (
        &ctx.sandbox.context.model_name,
        &ctx.sandbox.context.model_version,
    );
    let mut done = Vec::new();
    let mut forward_total = Duration::ZERO;
    for mut group in group_stackable(model, pending) {
        let started = Instant::now();
        // Only the forward can run unbounded (handler calls are cut at their time
        // limit): a lane is unresponsive while one has run past the response timeout.
        state.set_busy(true);
        let outputs = forward(model, &mut group);
        state.set_busy(false);
        let forward_time = started.elapsed();
        forward_total += forward_time;
        for (mut p, out) in group.into_iter().zip(outputs) {
            let _span = request_span(&p.id).entered();
            p.times.forward = forward_time;
            let started = Instant::now();
            let result = match (out, &p.request) {
                (Err(e), _) => Err(e),
                (Ok(outputs), None) => Ok(Output::Tensors(outputs)),
                (Ok(outputs), Some(request)) => match instance.as_mut() {
                    None => Err(no_instance(state)),
                    Some(handler) => {
                        match handler.postprocess(request, &outputs, p.stream.as_ref()) {
                            Ok(Ok(resp)) => Ok(Output::Response(resp)),
                            Ok(Err(e)) => Err(PredictError::Handler {
                                status: e.status,
                                message: e.message,
                            }),
                            Err(e) => {
                                renew(ctx, instance, state, queue);
                                Err(PredictError::Crash(e.to_string()))
                            }
                        }
                    }
                },
            };
            p.times.handler += started.elapsed();
            send(p.reply, result);
            done.push(p.times);
        }
    }
    // The lane's own share: the batch's time outside handlers and forwards.
    let busy: Duration = done.iter().map(|t| t.handler).sum::<Duration>() + forward_total;
    let lane = batch_started.elapsed().saturating_sub(busy);
    let metrics = crate::metrics::global();
    for mut t in done {
        t.lane = lane;
        metrics.lane_times(name, version, &t);
    }
}

/// Runs a pipeline's jobs one by one: `handle` per request, its model calls made from
/// inside it (see `core::pipeline`).
fn run_pipeline(
    ctx: &LaneContext,
    instance: &mut Option<HandlerInstance>,
    batch: Vec<Job>,
    state: &LaneState,
    queue: &Receiver<Job>,
) {
    let (name, version) = (
        &ctx.sandbox.context.model_name,
        &ctx.sandbox.context.model_version,
    );
    for job in batch {
        if job.cancelled() {
            tracing::debug!(request_id = %job.id, "dropped from the queue: its client went away");
            continue;
        }
        let _span = request_span(&job.id).entered();
        let mut times = LaneTimes {
            queue: job.enqueued.elapsed(),
            ..Default::default()
        };
        let request = match job.input {
            Input::Request(request) => request,
            Input::Tensors(_) => {
                send(
                    job.reply,
                    Err(PredictError::Input(format!(
                        "{name} is a pipeline: it takes a request for its handler, not tensors \
                         for a forward (it has none)"
                    ))),
                );
                continue;
            }
        };
        let Some(handler) = instance.as_mut() else {
            send(job.reply, Err(no_instance(state)));
            continue;
        };
        let started = Instant::now();
        let result = match handler.handle(&request, job.stream.as_ref()) {
            Ok(Ok(resp)) => Ok(Output::Response(resp)),
            Ok(Err(e)) => Err(PredictError::Handler {
                status: e.status,
                message: e.message,
            }),
            Err(e) => {
                tracing::warn!("the pipeline's handle failed: {e}");
                renew(ctx, instance, state, queue);
                Err(PredictError::Crash(e.to_string()))
            }
        };
        times.handler = started.elapsed();
        send(job.reply, result);
        crate::metrics::global().lane_times(name, version, &times);
    }
}

fn send(
    reply: oneshot::Sender<Result<Output, PredictError>>,
    result: Result<Output, PredictError>,
) {
    // The client may have gone away; nothing to do then.
    let _ = reply.send(result);
}

/// Replaces a trapped instance: the old one is dropped first, so that its place in the
/// pool is the new one's (the lane's slot guarantees room). If a fresh one cannot be
/// made, the lane is without an instance, says so, and retries between batches.
fn renew(
    ctx: &LaneContext,
    instance: &mut Option<HandlerInstance>,
    state: &LaneState,
    queue: &Receiver<Job>,
) {
    *instance = None;
    match ctx
        .handler
        .instantiate(&ctx.placement(state.placement).sandbox)
    {
        Ok(fresh) => *instance = Some(fresh),
        Err(e) => {
            tracing::error!("cannot replace a crashed handler instance: {e}");
            state.lost_instance(e.to_string());
            ctx.lane_gone(queue);
        }
    }
}

fn no_instance(state: &LaneState) -> PredictError {
    PredictError::Unavailable(format!(
        "the worker has no working handler instance: {}",
        lock(&state.last_error).clone().unwrap_or_default()
    ))
}

type Signature = Vec<(u8, Vec<u64>)>;

/// The part of a request's inputs that must agree for them to be stacked: per input,
/// its dtype and its shape after dimension 0; for an input the forward takes as a number
/// (`sr: int`), its value too (one value serves the whole batch).
fn signature(model: &Model, inputs: &[Tensor]) -> Signature {
    inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut key = t.shape.get(1..).unwrap_or(&[]).to_vec();
            if is_scalar_arg(model, i) {
                key.extend(t.data.iter().map(|&b| b as u64));
            }
            (t.dtype as u8, key)
        })
        .collect()
}

/// Whether the forward takes input `i` as a number rather than a tensor.
fn is_scalar_arg(model: &Model, i: usize) -> bool {
    model
        .schema()
        .and_then(|s| s.args.get(i))
        .is_some_and(|a| a.ty.is_scalar())
}

/// Splits requests into groups that can share one forward, keeping arrival order.
fn group_stackable(model: &Model, pending: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<(Signature, Vec<Pending>)> = Vec::new();
    for p in pending {
        let sig = signature(model, &p.inputs);
        let stackable = !p.inputs.is_empty() && p.inputs.iter().all(|t| !t.shape.is_empty());
        match groups.iter_mut().find(|(s, _)| stackable && *s == sig) {
            Some((_, g)) => g.push(p),
            None => groups.push((sig, vec![p])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Runs one forward for a group and returns each request's outputs.
///
/// The inputs reach libtorch without a copy: a single request's tensors are lent as
/// they came out of the sandbox, a batch's are stacked once into one buffer that is
/// lent in turn. The only other copy is of the outputs, into the tensors handed to
/// postprocess.
fn forward(model: &Model, group: &mut [Pending]) -> Vec<Result<Vec<Tensor>, PredictError>> {
    let len = group.len();
    let fail = |msg: String| {
        (0..len)
            .map(|_| Err(PredictError::Model(msg.clone())))
            .collect()
    };
    let fail_input = |msg: String| {
        (0..len)
            .map(|_| Err(PredictError::Input(msg.clone())))
            .collect()
    };
    let n_inputs = group[0].inputs.len();
    // Declared before `args` and `outputs`, so that it outlives every libtorch tensor
    // that borrows from it.
    let mut stacked: Vec<Tensor> = if len == 1 {
        Vec::new()
    } else {
        (0..n_inputs)
            .map(|i| match is_scalar_arg(model, i) {
                // The same number in every request of the group (see `signature`).
                true => group[0].inputs[i].clone(),
                false => stack(group.iter().map(|p| &p.inputs[i])),
            })
            .collect()
    };
    let mut args = Vec::with_capacity(n_inputs);
    let sources: &mut [Tensor] = if len == 1 {
        &mut group[0].inputs
    } else {
        &mut stacked
    };
    for source in sources.iter_mut() {
        // SAFETY: `source` (a request's input, or `stacked`) outlives `args` and
        // `outputs`, which are dropped at the end of this function, after the outputs
        // were copied out by `from_torch`.
        match unsafe { model::borrow_torch(source) } {
            Ok(t) => args.push(t),
            Err(e) => return fail(e.to_string()),
        }
    }
    let started = Instant::now();
    let outputs = model.forward(&args);
    tracing::debug!(
        requests = len,
        "forward of a batch of {len} request(s) took {} us",
        started.elapsed().as_micros()
    );
    let outputs = match outputs {
        Ok(o) => o,
        Err(e @ model::ModelError::Arguments(_)) => return fail_input(e.to_string()),
        Err(e) if len > 1 => {
            return fail(format!(
                "the model's forward failed on a batch of {len} requests: {e}; if the model \
                 takes one input at a time, set batchSize: 1 in its model-config.yaml"
            ));
        }
        Err(e) => return fail(e.to_string()),
    };
    if len == 1 {
        let converted: Result<Vec<Tensor>, _> = outputs
            .iter()
            .map(|(name, t)| model::from_torch(name, t))
            .collect();
        return vec![converted.map_err(|e| PredictError::Model(e.to_string()))];
    }
    // Split every output along dimension 0 by each request's share of the batch.
    let lead = (0..n_inputs)
        .find(|&i| !is_scalar_arg(model, i))
        .unwrap_or(0);
    let sizes: Vec<i64> = group
        .iter()
        .map(|p| p.inputs[lead].shape[0] as i64)
        .collect();
    let total: i64 = sizes.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = (0..len).map(|_| Vec::new()).collect();
    for (name, out) in &outputs {
        if out.dim() == 0 || out.size()[0] != total {
            return fail(format!(
                "the model's output of shape {:?} cannot be split into a batch of {total}; set batch_size to 1 for this model",
                out.size()
            ));
        }
        for (slot, piece) in per_request
            .iter_mut()
            .zip(out.split_with_sizes(sizes.as_slice(), 0))
        {
            match model::from_torch(name, &piece) {
                Ok(t) => slot.push(t),
                Err(e) => return fail(e.to_string()),
            }
        }
    }
    per_request.into_iter().map(Ok).collect()
}

/// Concatenates same-typed tensors on dimension 0 into one buffer (the batch's one copy).
/// A malformed tensor makes a tensor that `check_tensor` refuses.
fn stack<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Tensor {
    let tensors: Vec<&Tensor> = tensors.collect();
    let first = tensors[0];
    let mut data = Vec::with_capacity(tensors.iter().map(|t| t.data.len()).sum());
    let mut rows = 0;
    for t in &tensors {
        data.extend_from_slice(&t.data);
        rows += t.shape[0];
    }
    let mut shape = first.shape.clone();
    shape[0] = rows;
    Tensor {
        name: String::new(),
        dtype: first.dtype,
        shape,
        data,
    }
}
