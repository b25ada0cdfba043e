//! Worker lanes: the threads that turn queued requests into responses.
//!
//! A lane owns one handler instance and runs, on its own OS thread (never on the async
//! executor): take the first waiting job, gather up to `batch_size - 1` more within
//! `max_batch_delay` (TorchServe's batching), preprocess each in the sandbox, stack the
//! inputs of requests whose tensors agree in dtype and trailing shape on dimension 0,
//! run one forward on the shared model, split the outputs back along dimension 0 and
//! postprocess each request's slice. A failure of one request's preprocess or
//! postprocess fails that request alone; a trap replaces the lane's instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use crate::metrics::LaneTimes;
use crate::model::{self, Model};
use crate::runtime::{
    HandlerComponent, HandlerInstance, Request, Response, RuntimeError, Sandbox, Tensor,
};

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
}

/// One queued request.
pub struct Job {
    pub request: Request,
    /// When it was queued: queue time is measured from here.
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Response, PredictError>>,
}

/// What a lane needs; shared by all lanes of a model version.
pub struct LaneContext {
    pub model: Arc<Model>,
    pub handler: HandlerComponent,
    pub sandbox: Sandbox,
    pub batch_size: usize,
    pub max_batch_delay: Duration,
    /// libtorch intra-op threads for this lane's forwards.
    pub intra_op_threads: usize,
    /// Held by the lane gathering a batch, so that concurrent requests end up in one
    /// lane's batch instead of spread one by one over idle lanes (TorchServe's
    /// `pollBatch` lock). Not taken when `batch_size` is 1.
    pub gather: std::sync::Mutex<()>,
}

/// A running lane; dropping it does not stop it, [`Lane::stop`] does.
pub struct Lane {
    pub id: usize,
    /// When the lane started (TorchServe's worker `startTime`).
    pub started: chrono::DateTime<chrono::Utc>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lane {
    /// Instantiates the handler (its `init` runs here, so a failing `init` fails the
    /// start) and starts the lane's thread on `queue`.
    pub fn start(
        id: usize,
        name: &str,
        ctx: Arc<LaneContext>,
        queue: Receiver<Job>,
    ) -> Result<Lane, RuntimeError> {
        let instance = ctx.handler.instantiate(&ctx.sandbox)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-w{id}"))
            .spawn(move || run(ctx, instance, queue, thread_stop))
            .map_err(|e| RuntimeError::Other(format!("cannot start a worker thread: {e}")))?;
        Ok(Lane {
            id,
            started: chrono::Utc::now(),
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the lane to stop after its current batch and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    ctx: Arc<LaneContext>,
    mut instance: HandlerInstance,
    queue: Receiver<Job>,
    stop: Arc<AtomicBool>,
) {
    tch::set_num_threads(ctx.intra_op_threads as i32);
    while !stop.load(Ordering::Relaxed) {
        let batch = {
            let _gathering =
                (ctx.batch_size > 1).then(|| ctx.gather.lock().unwrap_or_else(|p| p.into_inner()));
            let first = match queue.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
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
        run_batch(&ctx, &mut instance, batch);
    }
}

/// A request between preprocess and postprocess.
struct Pending {
    job: Job,
    inputs: Vec<Tensor>,
    times: LaneTimes,
}

fn request_span(job: &Job) -> tracing::Span {
    tracing::info_span!("request", request_id = %job.request.id)
}

fn run_batch(ctx: &LaneContext, instance: &mut HandlerInstance, batch: Vec<Job>) {
    let batch_started = Instant::now();
    let mut pending = Vec::with_capacity(batch.len());
    for job in batch {
        let _span = request_span(&job).entered();
        let queue = job.enqueued.elapsed();
        tracing::debug!("queued for {} us", queue.as_micros());
        let started = Instant::now();
        let result = instance.preprocess(&job.request);
        let times = LaneTimes {
            queue,
            handler: started.elapsed(),
            ..Default::default()
        };
        match result {
            Ok(Ok(inputs)) => match inputs.iter().try_for_each(model::check_tensor) {
                Ok(()) => pending.push(Pending { job, inputs, times }),
                Err(e) => reply(
                    job,
                    Err(PredictError::Handler {
                        status: 500,
                        message: format!(
                            "the handler's preprocess returned a malformed tensor: {e}"
                        ),
                    }),
                ),
            },
            Ok(Err(e)) => reply(
                job,
                Err(PredictError::Handler {
                    status: e.status,
                    message: e.message,
                }),
            ),
            Err(e) => {
                tracing::warn!("the handler's preprocess failed: {e}");
                reply(job, Err(PredictError::Crash(e.to_string())));
                renew(ctx, instance);
            }
        }
    }
    let (name, version) = (
        &ctx.sandbox.context.model_name,
        &ctx.sandbox.context.model_version,
    );
    let mut done = Vec::new();
    let mut forward_total = Duration::ZERO;
    for mut group in group_stackable(pending) {
        let started = Instant::now();
        let outputs = forward(ctx, &mut group);
        let forward_time = started.elapsed();
        forward_total += forward_time;
        for (mut p, out) in group.into_iter().zip(outputs) {
            let _span = request_span(&p.job).entered();
            p.times.forward = forward_time;
            let started = Instant::now();
            let result = match out {
                Err(e) => Err(e),
                Ok(outputs) => match instance.postprocess(&p.job.request, &outputs) {
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(e)) => Err(PredictError::Handler {
                        status: e.status,
                        message: e.message,
                    }),
                    Err(e) => {
                        renew(ctx, instance);
                        Err(PredictError::Crash(e.to_string()))
                    }
                },
            };
            p.times.handler += started.elapsed();
            reply(p.job, result);
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

fn reply(job: Job, result: Result<Response, PredictError>) {
    // The client may have gone away; nothing to do then.
    let _ = job.reply.send(result);
}

/// Replaces a trapped instance. If even a fresh one cannot be made, the old one stays
/// and the next call reports the problem.
fn renew(ctx: &LaneContext, instance: &mut HandlerInstance) {
    match ctx.handler.instantiate(&ctx.sandbox) {
        Ok(fresh) => *instance = fresh,
        Err(e) => tracing::error!("cannot replace a crashed handler instance: {e}"),
    }
}

type Signature = Vec<(u8, Vec<u64>)>;

/// The part of a request's inputs that must agree for them to be stacked: per input,
/// its dtype and its shape after dimension 0.
fn signature(inputs: &[Tensor]) -> Signature {
    inputs
        .iter()
        .map(|t| (t.dtype as u8, t.shape.get(1..).unwrap_or(&[]).to_vec()))
        .collect()
}

/// Splits requests into groups that can share one forward, keeping arrival order.
fn group_stackable(pending: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<(Signature, Vec<Pending>)> = Vec::new();
    for p in pending {
        let sig = signature(&p.inputs);
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
fn forward(ctx: &LaneContext, group: &mut [Pending]) -> Vec<Result<Vec<Tensor>, PredictError>> {
    let len = group.len();
    let fail = |msg: String| {
        (0..len)
            .map(|_| Err(PredictError::Model(msg.clone())))
            .collect()
    };
    let n_inputs = group[0].inputs.len();
    // Declared before `args` and `outputs`, so that it outlives every libtorch tensor
    // that borrows from it.
    let mut stacked: Vec<Tensor> = if len == 1 {
        Vec::new()
    } else {
        (0..n_inputs)
            .map(|i| stack(group.iter().map(|p| &p.inputs[i])))
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
    let outputs = ctx.model.forward(&args);
    tracing::debug!(
        requests = len,
        "forward of a batch of {len} request(s) took {} us",
        started.elapsed().as_micros()
    );
    let outputs = match outputs {
        Ok(o) => o,
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
    let sizes: Vec<i64> = group.iter().map(|p| p.inputs[0].shape[0] as i64).collect();
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
