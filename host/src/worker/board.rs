//! What the lanes of one model version share about themselves, and the gate of its
//! queue: each lane reports whether it has a working handler instance and whether its
//! forward has run past the response timeout; a job is queued only while some lane can
//! take it, and whatever is queued is answered at once when none can any more (the
//! last lane to go, a version taken out of service). Nothing waits for a lane that will
//! never come. A version that scales to zero is *cold* while unloaded: its jobs are
//! queued without a lane, for the lanes its wake-up starts (`registry`'s `wake`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{Job, LaneContext, PredictError, send};
use crate::core::device::DeviceKind;
use crate::core::status::WorkerStatus;

/// Why a job was not queued (the job is dropped: its caller answers for it).
#[derive(Debug, PartialEq)]
pub enum SubmitError {
    /// The version was taken out of service (unregistered).
    Closed,
    /// No lane can take it: no worker, or none with a working instance.
    NoWorker,
    /// The queue is full (`job_queue_size`).
    Full,
}

/// How a job was queued.
#[derive(Debug, PartialEq)]
pub enum Queued {
    /// For the running lanes.
    Ready,
    /// For a cold version (scaled to zero): it waits until the version is woken.
    Cold,
}

/// What the lanes of one version share: each lane's state, and the gate of the queue.
#[derive(Default)]
pub struct LaneBoard {
    pub(super) lanes: Mutex<Vec<Arc<LaneState>>>,
    /// Held while a job is queued and while the queue is emptied, so that no job can be
    /// queued after the last lane able to take it has gone.
    pub(super) gate: Mutex<Gate>,
}

/// The gate's state.
#[derive(Default)]
pub(super) struct Gate {
    /// Out of service: nothing is queued any more.
    closed: bool,
    /// Scaled to zero: jobs are queued for the lanes a wake-up starts.
    cold: bool,
}

/// One lane's state, as the lane itself reports it.
pub struct LaneState {
    pub id: usize,
    /// Its index in the version's placements, and that placement's device.
    pub placement: usize,
    pub device: DeviceKind,
    /// When the lane started (TorchServe's worker `startTime`).
    pub started: chrono::DateTime<chrono::Utc>,
    pub(super) stop: AtomicBool,
    /// Whether the lane has a working handler instance.
    pub(super) has_instance: AtomicBool,
    /// When the current forward started, while one runs.
    busy_since: Mutex<Option<Instant>>,
    /// Why the lane has no instance, when it has none.
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) exited: Mutex<bool>,
    pub(super) exited_cv: Condvar,
    /// Given up on by a stop that could not wait any longer.
    pub(super) abandoned: AtomicBool,
    /// Rung by [`LaneState::signal_stop`]: an idle lane blocks on its queue and on
    /// this, never polling (an idle model costs no CPU).
    stop_bell: (Sender<()>, Receiver<()>),
}

/// Lanes given up on whose threads are still running (inside a forward).
pub(super) static ABANDONED: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// How many abandoned lanes are still running.
pub fn abandoned_lanes() -> usize {
    ABANDONED.load(Ordering::Acquire)
}

/// A lane's health as `describe` shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum LaneHealth {
    /// Has a working instance and is idle or within its time.
    Ready,
    /// Has no working handler instance (it keeps trying to make one): the reason.
    Error(String),
    /// Its current forward has run past the response timeout (a forward that does not
    /// return): it takes no more work and is abandoned when stopped.
    Unresponsive(Duration),
}

impl LaneState {
    pub(super) fn new(id: usize, placement: usize, device: DeviceKind) -> LaneState {
        LaneState {
            id,
            placement,
            device,
            started: chrono::Utc::now(),
            stop: AtomicBool::new(false),
            has_instance: AtomicBool::new(true),
            busy_since: Mutex::new(None),
            last_error: Mutex::new(None),
            exited: Mutex::new(false),
            exited_cv: Condvar::new(),
            abandoned: AtomicBool::new(false),
            stop_bell: crossbeam_channel::bounded(1),
        }
    }

    /// Asks the lane to stop after its current batch, waking it if it waits.
    pub(super) fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.stop_bell.0.try_send(());
    }

    /// What [`LaneState::signal_stop`] rings.
    pub(super) fn stop_bell(&self) -> &Receiver<()> {
        &self.stop_bell.1
    }

    /// Its health, given the version's response timeout.
    pub fn health(&self, timeout: Duration) -> LaneHealth {
        if !self.has_instance.load(Ordering::Acquire) {
            let why = lock(&self.last_error).clone().unwrap_or_default();
            return LaneHealth::Error(why);
        }
        match *lock(&self.busy_since) {
            Some(t) if t.elapsed() > timeout => LaneHealth::Unresponsive(t.elapsed()),
            _ => LaneHealth::Ready,
        }
    }

    pub(super) fn set_busy(&self, busy: bool) {
        *lock(&self.busy_since) = busy.then(Instant::now);
    }

    pub(super) fn lost_instance(&self, why: String) {
        *lock(&self.last_error) = Some(why);
        self.has_instance.store(false, Ordering::Release);
    }

    pub(super) fn got_instance(&self) {
        *lock(&self.last_error) = None;
        self.has_instance.store(true, Ordering::Release);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LaneContext {
    /// How many lanes could take a request now: running, with a working instance, not
    /// past the response timeout.
    pub fn ready_lanes(&self) -> usize {
        let timeout = self.sandbox.call_timeout;
        lock(&self.board.lanes)
            .iter()
            .filter(|l| !l.stopping() && l.health(timeout) == LaneHealth::Ready)
            .count()
    }

    /// Each lane's status: id, start, device and health.
    pub fn lane_health(&self) -> Vec<WorkerStatus> {
        let timeout = self.sandbox.call_timeout;
        lock(&self.board.lanes)
            .iter()
            .map(|l| WorkerStatus {
                id: l.id,
                started: l.started,
                gpu: l.device.gpu(),
                gpu_usage: l.device.gpu().and_then(crate::nvml::reading),
                health: l.health(timeout),
            })
            .collect()
    }

    /// Queues `job` if a lane can take it, or for the wake-up of a cold version.
    pub fn submit(&self, queue: &Sender<Job>, job: Job) -> Result<Queued, SubmitError> {
        let gate = lock(&self.board.gate);
        if gate.closed {
            return Err(SubmitError::Closed);
        }
        let queued = match gate.cold {
            true => Queued::Cold,
            false if self.ready_lanes() == 0 => return Err(SubmitError::NoWorker),
            false => Queued::Ready,
        };
        queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })?;
        Ok(queued)
    }

    /// Takes the version out of service: no job is queued from now on.
    pub fn close(&self) {
        lock(&self.board.gate).closed = true;
    }

    /// Whether the version is out of service.
    pub fn is_closed(&self) -> bool {
        lock(&self.board.gate).closed
    }

    /// Whether the version is cold (scaled to zero, or being woken).
    pub fn is_cold(&self) -> bool {
        lock(&self.board.gate).cold
    }

    /// Marks the version warm (its lanes run) or cold. Going cold only happens with
    /// nothing queued: returns whether it happened (a job queued meanwhile keeps it
    /// warm).
    pub fn set_cold(&self, queue: &Receiver<Job>, cold: bool) -> bool {
        let mut gate = lock(&self.board.gate);
        if cold && !queue.is_empty() {
            return false;
        }
        gate.cold = cold;
        true
    }

    /// Answers every queued job with `why` (503), under the gate.
    pub fn fail_queued(&self, queue: &Receiver<Job>, why: &str) {
        let _gate = lock(&self.board.gate);
        let mut n = 0;
        while let Ok(job) = queue.try_recv() {
            send(job.reply, Err(PredictError::Unavailable(why.to_string())));
            n += 1;
        }
        if n > 0 {
            tracing::warn!("answered {n} queued request(s) at once: {why}");
        }
    }

    /// After a lane lost its instance or stopped: when no lane can take work any more,
    /// what is queued is answered now instead of waiting for its timeout.
    /// A cold version's jobs wait for its wake-up instead.
    pub(super) fn lane_gone(&self, queue: &Receiver<Job>) {
        if self.ready_lanes() == 0 && !self.is_cold() {
            self.fail_queued(queue, &self.no_worker_message());
        }
    }

    /// TorchServe's 503 message for a model without a worker to serve it.
    pub fn no_worker_message(&self) -> String {
        format!(
            "Model \"{}\" has no worker to serve inference request. Please use scale workers API to add workers.",
            self.sandbox.context.model_name
        )
    }
}
