//! The protocol-neutral core: the served models and every operation on them, in the
//! core's own types. The frontends (`frontend::torchserve`, `frontend::kserve`) parse
//! their wire formats into these calls and render the results and the one [`Error`]
//! back; none of them knows another, and the core knows none of them.
//!
//! - [`Core::predict`]: a request for a model's handler, or ready tensors for its
//!   forward, through the version's queue, batching and lanes, bounded by its
//!   `responseTimeout` and the server's `max_response_size` ([`predict`]);
//!   [`Core::predict_streaming`]: the same, with a streaming handler's intermediate
//!   responses handed out as they come ([`Streamed`]);
//! - [`Core::register`], [`Core::scale`], [`Core::unregister`], [`Core::set_default`]:
//!   the lifecycle, each writing its own snapshot once it happened ([`manage`]);
//! - [`Core::status`], [`Core::ready`]: what is served and whether it can answer
//!   ([`status`]);
//! - [`pipeline`]: pipelines' calls to models (`models.infer`), through the same queues;
//! - [`startup`]: the models `--models`/`load_models` or a snapshot name;
//! - [`signature`], [`tensor`]: what a model takes and gives, in the protocol's
//!   datatypes;
//! - [`device`]: the GPUs the server may use and the devices each model's workers run
//!   on (`deviceType`, `deviceIds`, `number_of_gpu`);
//! - [`workflow`]: TorchServe's workflows, DAGs of model and function nodes over the
//!   same predict path.

pub mod device;
pub mod error;
pub mod manage;
pub mod pipeline;
pub mod predict;
pub mod signature;
pub mod startup;
pub mod status;
pub mod tensor;
pub mod workflow;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::worker::{Input, Output};
pub use error::Error;
pub use manage::{Registered, Registration, Scaled};
pub use predict::{Piece, Streamed};
pub use status::ModelStatus;

use crate::config::ServerConfig;
use crate::registry::{ModelVersion, Registry};
use crate::sandbox::HandlerRuntime;

/// The served models and what changing them takes; shared by every frontend.
pub struct Core {
    pub registry: Arc<Registry>,
    pub runtime: Arc<HandlerRuntime>,
    pub config: ServerConfig,
    /// Where archives are extracted; removed when the server stops.
    pub work_dir: PathBuf,
    /// Where snapshots go (`None`: `--ncs`).
    pub snapshot_dir: Option<PathBuf>,
    /// Whether the startup models have been loaded (tried, at least).
    started: AtomicBool,
    /// The registered workflows.
    pub(crate) workflows: workflow::Workflows,
}

impl Core {
    pub fn new(
        config: ServerConfig,
        runtime: Arc<HandlerRuntime>,
        work_dir: PathBuf,
        snapshot_dir: Option<PathBuf>,
    ) -> Core {
        let registry = Arc::new(Registry::default());
        registry.set_model_caller(Arc::new(pipeline::CoreModels {
            registry: Arc::downgrade(&registry),
            max_response_size: config.max_response_size,
        }));
        registry.start_reaper();
        Core {
            registry,
            runtime,
            config,
            work_dir,
            snapshot_dir,
            started: AtomicBool::new(false),
            workflows: Default::default(),
        }
    }

    /// Records the served set after a change (no-op with `--ncs`).
    pub fn snapshot(&self) {
        if let Some(dir) = &self.snapshot_dir {
            crate::snapshot::write(dir, &self.config, &self.registry);
        }
    }

    /// The version `version` of `name`, or its default version.
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelVersion>, Error> {
        Ok(self.registry.get(name, version)?)
    }

    /// The served models' names, sorted.
    pub fn model_names(&self) -> Vec<String> {
        self.registry
            .list()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Every version of `name`, in version order.
    pub fn versions(&self, name: &str) -> Result<Vec<Arc<ModelVersion>>, Error> {
        Ok(self.registry.versions(name)?)
    }

    /// The state of one version.
    pub fn status(&self, name: &str, version: Option<&str>) -> Result<ModelStatus, Error> {
        Ok(self.model(name, version)?.status())
    }

    /// Marks the startup models as loaded (or tried): from now on the server is ready
    /// when its models are.
    pub fn startup_done(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Whether every model has at least its `minWorkers` ready (TorchServe's `/ping`).
    pub fn healthy(&self) -> bool {
        self.registry.healthy()
    }

    /// Whether the server can serve what it was started with: the startup models are
    /// loaded and every model is healthy (KServe's and Triton's readiness).
    pub fn ready(&self) -> bool {
        self.started.load(Ordering::Acquire) && self.healthy()
    }
}
