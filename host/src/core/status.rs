//! A model version's state as the core reports it: settings, workers, queue. Each
//! frontend renders it its own way (TorchServe's `describe`, KServe's readiness).

use std::time::Duration;

pub use crate::worker::LaneHealth;

/// One worker.
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    pub id: usize,
    pub started: chrono::DateTime<chrono::Utc>,
    /// The GPU it runs on, `None` on the CPU.
    pub gpu: Option<usize>,
    /// That GPU's reading, where the driver gives one.
    pub gpu_usage: Option<crate::nvml::GpuReading>,
    pub health: LaneHealth,
}

/// One model version.
#[derive(Clone, Debug)]
pub struct ModelStatus {
    pub name: String,
    pub version: String,
    /// Where its archive came from, as given.
    pub url: String,
    /// The manifest's runtime.
    pub runtime: String,
    pub min_workers: usize,
    pub max_workers: usize,
    pub batch_size: usize,
    pub max_batch_delay: Duration,
    pub response_timeout: Duration,
    pub loaded_at_startup: bool,
    pub workers: Vec<WorkerStatus>,
    /// Free places in its job queue.
    pub queue_capacity: usize,
    /// Requests waiting in its job queue.
    pub queue_pending: usize,
    /// `scaleToZero`: its idle time and whether it is loaded now.
    pub scale_to_zero: Option<ScaleToZero>,
}

/// A version that scales to zero.
#[derive(Clone, Debug)]
pub struct ScaleToZero {
    /// `scaleToZeroIdleSeconds`.
    pub idle: Duration,
    /// Loaded now (weights and workers); else cold until a request comes.
    pub loaded: bool,
}

impl ModelStatus {
    /// Whether some worker can take a request now, or a cold version would load for it.
    pub fn ready(&self) -> bool {
        self.scale_to_zero.as_ref().is_some_and(|s| !s.loaded)
            || self
                .workers
                .iter()
                .any(|w| matches!(w.health, LaneHealth::Ready))
    }
}
