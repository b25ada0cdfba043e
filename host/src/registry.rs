//! The registry of served models: names → versions → a loaded [`ModelVersion`] (its
//! archive, TorchScript module, compiled handler, queue and worker lanes).
//!
//! Loading a version (`ModelVersion::load`) is blocking work: extracting the archive,
//! compiling the handler, loading the weights and starting the lanes. A failure at any
//! step leaves nothing registered.
//!
//! A version with `scaleToZero: true` is loaded once at registration (so that a broken
//! archive is refused then), and unloaded at once: it stays registered *cold*, with no
//! weights and no handler instance. The first request queues and wakes it (weights,
//! then its `minWorkers` lanes, at least one, on a thread of its own); the registry's
//! reaper ([`Registry::reap_idle`], once a second) unloads it again after
//! `scaleToZeroIdleSeconds` without a request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::archive::OpenedArchive;
use crate::builtin;
use crate::config::{ModelSettings, ServerConfig};
use crate::core::device::{DeviceKind, Gpus};
use crate::core::signature::Signature;
use crate::core::status::{ModelStatus, WorkerStatus};
use crate::model::Model;
use crate::sandbox::{Context, HandlerRuntime, ModelCaller, Models, Sandbox, World};
use crate::slots::{Reservation, SlotsFull};
use crate::worker::{Job, Lane, LaneContext, Placement, Queued, SubmitError};

/// What to load, and the management API's overrides of the archive's settings.
#[derive(Clone, Debug, Default)]
pub struct LoadRequest {
    /// The name to serve it under (default: the manifest's `modelName`).
    pub name: Option<String>,
    /// Where it came from, as given (`modelUrl`).
    pub url: String,
    /// The archive file or unpacked folder.
    pub path: PathBuf,
    pub overrides: crate::config::ModelOverrides,
    /// Loaded by `--models` / `load_models`.
    pub at_startup: bool,
    /// A built-in handler to use instead of the archive's (`handler=` on registration).
    pub handler: Option<String>,
    /// The workflow this model is a node of (left out of snapshots).
    pub workflow: Option<String>,
}

/// Why a model could not be loaded; the message names the archive and the step.
#[derive(Debug, thiserror::Error)]
#[error("cannot load {archive}: {message}")]
pub struct LoadError {
    pub archive: String,
    pub message: String,
}

/// One loaded version of a model.
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    /// Where the archive came from, as given (TorchServe's `modelUrl`).
    pub url: String,
    /// The manifest's runtime (`wasm`, or `python` for TorchServe-made archives).
    pub runtime: String,
    /// Whether it came from `--models` / `load_models` rather than the management API.
    pub loaded_at_startup: bool,
    /// The workflow it is a node of, if any (`<workflow>__<node>`).
    pub workflow: Option<String>,
    /// Settings fixed at load time (batching, timeouts, queue size).
    pub settings: ModelSettings,
    /// The inputs and outputs its metadata shows.
    pub signature: Signature,
    /// `(minWorkers, maxWorkers)`, changed by the scale API.
    workers_range: Mutex<(usize, usize)>,
    queue: Sender<Job>,
    /// Kept so that new lanes can attach to the queue.
    queue_rx: Receiver<Job>,
    lane_ctx: Arc<LaneContext>,
    lanes: Mutex<Vec<Lane>>,
    /// Instance slots reserved at registration for workers started later (an
    /// asynchronous registration), so that what was accepted fits.
    reserved: Mutex<Option<Reservation>>,
    /// Whether this version is in the registry (its metrics are its own only then: a
    /// refused duplicate must not touch the served version's).
    serving: AtomicBool,
    /// `scaleToZero`: how it unloads when idle and wakes on a request.
    elastic: Option<Elastic>,
    /// Keeps the extracted archive (the handler's `/model`) alive.
    _archive: OpenedArchive,
}

/// A version that scales to zero.
struct Elastic {
    /// `scaleToZeroIdleSeconds`.
    idle: Duration,
    /// When a request last came.
    last_used: Mutex<Instant>,
    /// Whether a wake-up thread runs.
    waking: AtomicBool,
}

/// Gives the heap's free pages back to the system after a version unloads its weights
/// (glibc keeps them otherwise, and the RSS of a server of many cold models grows).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Why the workers of a version could not be scaled; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The workers do not fit into the instance pool.
    #[error("cannot run {min} worker(s) for model {model} version {version}: {source}")]
    Full {
        model: String,
        version: String,
        min: usize,
        source: SlotsFull,
    },
    /// A worker could not start (its handler's `init` failed, …).
    #[error("{0}")]
    Start(String),
}

impl ModelVersion {
    /// Opens `archive_path` and loads everything: settings are the server's defaults <
    /// the archive's `model-config.yaml` < `overrides` (the management API's). Starts no
    /// worker: call [`ModelVersion::scale`].
    pub fn load(
        request: &LoadRequest,
        server: &ServerConfig,
        runtime: &HandlerRuntime,
        work_dir: &Path,
        model_caller: Option<&Arc<dyn ModelCaller>>,
    ) -> Result<ModelVersion, LoadError> {
        let (name, url, archive_path) = (
            request.name.as_deref(),
            request.url.as_str(),
            request.path.as_path(),
        );
        let err = |message: String| LoadError {
            archive: url.to_string(),
            message,
        };
        let archive = OpenedArchive::open(archive_path, work_dir, server.archive_limits)
            .map_err(|e| err(e.to_string()))?;
        let m = &archive.manifest.model;
        let model_name = name.unwrap_or(&m.model_name).to_string();

        let mut settings = ModelSettings::defaults(server);
        if let Some(cfg) = &m.config_file {
            let text = std::fs::read_to_string(archive.dir.join(cfg))
                .map_err(|e| err(format!("{cfg}: {e}")))?;
            settings
                .apply_yaml(&text, cfg)
                .map_err(|e| err(e.to_string()))?;
        }
        if let Some(per_model) = server
            .models
            .as_ref()
            .and_then(|per| per.get(&model_name, &m.model_version))
        {
            settings
                .apply_json(per_model, "config.properties `models`")
                .map_err(|e| err(e.to_string()))?;
        }
        request.overrides.apply(&mut settings).map_err(err)?;

        let handler_name = match &request.handler {
            Some(h) if builtin::component(h).is_none() => {
                return Err(err(format!(
                    "handler {h:?} is not a built-in handler ({})",
                    builtin::names().join(", ")
                )));
            }
            Some(h) => h.as_str(),
            None => m
                .handler
                .as_deref()
                .ok_or_else(|| err("the manifest names no handler".into()))?,
        };
        let wasm: std::borrow::Cow<[u8]> = if handler_name.ends_with(".wasm") {
            std::fs::read(archive.dir.join(handler_name))
                .map_err(|e| err(format!("{handler_name}: {e}")))?
                .into()
        } else if let Some(bytes) = builtin::component(handler_name) {
            bytes.into()
        } else {
            return Err(err(
                if handler_name
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .ends_with(".py")
                {
                    crate::archive::python::refusal_at_load(handler_name)
                } else {
                    format!(
                        "handler {handler_name:?} is neither a .wasm component in the archive nor a built-in handler ({})",
                        builtin::names().join(", ")
                    )
                },
            ));
        };
        let handler = runtime.compile(&wasm).map_err(|e| err(e.to_string()))?;

        // A pipeline calls models and has none of its own; a handler's model is the
        // archive's TorchScript file.
        let model_is_pipeline = handler.world() == World::Pipeline;
        if model_is_pipeline && settings.scale_to_zero.is_some() {
            return Err(err(
                "scaleToZero unloads a model's weights, and a pipeline has none: scale \
                 the models it calls to zero instead"
                    .into(),
            ));
        }
        // A pipeline runs no forward of its own: it stays on the CPU.
        let devices = if model_is_pipeline {
            vec![DeviceKind::Cpu]
        } else {
            Gpus::probe(server.number_of_gpu)
                .plan(&settings.device)
                .map_err(err)?
        };
        let (models_per_device, model_path, models) = match handler.world() {
            World::Pipeline => {
                if let Some(file) = &m.serialized_file {
                    return Err(err(format!(
                        "the archive's handler is a pipeline, which calls the models its \
                         model-config.yaml declares (`models:`) and has no model of its own; \
                         serve {file} as a model of its own archive and declare it"
                    )));
                }
                let models = Models {
                    declared: settings.models.clone(),
                    caller: model_caller.cloned().ok_or_else(|| {
                        err("this server cannot run pipelines (no model caller)".into())
                    })?,
                };
                (vec![None], None, Some(models))
            }
            World::Handler => {
                let serialized = m.serialized_file.as_deref().ok_or_else(|| {
                    err("the manifest names no serializedFile; wasmserve serves TorchScript models (torch.jit.trace/script, then save)".into())
                })?;
                let model_path = archive.dir.join(serialized);
                // One copy of the weights per device, shared by its lanes.
                let loaded = devices
                    .iter()
                    .map(|d| {
                        Model::load_with(&model_path, d.torch(), settings.jit_optimize)
                            .map(|m| Some(Arc::new(m)))
                            .map_err(|e| match d {
                                DeviceKind::Cpu => err(e.to_string()),
                                _ => err(format!("on {d}: {e}")),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (loaded, Some(model_path), None)
            }
        };

        let context = Context {
            model_name: model_name.clone(),
            model_version: m.model_version.clone(),
            manifest: archive.manifest_text.clone(),
            config: serde_json::Value::Object(settings.handler_config.clone()).to_string(),
            batch_size: settings.batch_size as u32,
            device: devices[0].to_string(),
        };
        let workers = settings.min_workers.max(1);
        // libtorch threads per forward: the cores shared among the lanes this version
        // will run at most, so that concurrent forwards do not oversubscribe the CPU.
        let workers = settings.max_workers.max(workers);
        let intra_op_threads = server
            .intra_op_threads
            .unwrap_or_else(|| (crate::config::num_cores() / workers).max(1));
        let sandbox = Sandbox {
            models,
            model_dir: archive.dir.clone(),
            context,
            max_memory: settings.handler_memory_limit,
            call_timeout: settings.response_timeout,
            image_mode: settings.image_mode,
        };
        let placements = devices
            .iter()
            .zip(models_per_device.into_iter().cycle())
            .map(|(&device, model)| {
                let mut sandbox = sandbox.clone();
                sandbox.context.device = device.to_string();
                Placement {
                    device,
                    model: std::sync::RwLock::new(model),
                    sandbox,
                }
            })
            .collect();
        let lane_ctx = Arc::new(LaneContext {
            placements,
            module_per_worker: model_path.clone().filter(|_| settings.module_per_worker),
            model_file: model_path,
            jit_optimize: settings.jit_optimize,
            handler,
            sandbox,
            // A pipeline's requests run one by one; its model calls are what batch.
            batch_size: if model_is_pipeline {
                1
            } else {
                settings.batch_size
            },
            max_batch_delay: settings.max_batch_delay,
            intra_op_threads,
            gather: Default::default(),
            board: Default::default(),
        });
        let (queue, queue_rx) = crossbeam_channel::bounded(settings.job_queue_size);
        let signature = Signature::new(
            settings.inputs.clone(),
            settings.outputs.clone(),
            lane_ctx.model().as_deref().and_then(|m| m.schema()),
        );
        // Scaling to zero: checked loaded, now unloaded until a request comes.
        let elastic = settings.scale_to_zero.map(|idle| {
            lane_ctx.placements.iter().for_each(|p| p.set_model(None));
            lane_ctx.set_cold(&queue_rx, true);
            release_free_memory();
            Elastic {
                idle,
                last_used: Mutex::new(Instant::now()),
                waking: AtomicBool::new(false),
            }
        });
        let version = ModelVersion {
            signature,
            name: model_name,
            version: m.model_version.clone(),
            url: url.to_string(),
            runtime: archive.manifest.runtime.clone(),
            loaded_at_startup: request.at_startup,
            workflow: request.workflow.clone(),
            workers_range: Mutex::new((settings.min_workers, settings.max_workers)),
            settings,
            queue,
            queue_rx,
            lane_ctx,
            lanes: Mutex::new(Vec::new()),
            reserved: Mutex::new(None),
            serving: AtomicBool::new(false),
            elastic,
            _archive: archive,
        };
        Ok(version)
    }

    /// Sets the worker range and starts or stops lanes to `min` (TorchServe keeps
    /// `minWorkers` running; `maxWorkers` is reported and bounds the threads per lane).
    /// What does not fit into the instance pool is refused before anything changes; a
    /// worker that fails to start undoes the whole change.
    ///
    /// A version that scales to zero only records the range while cold (its wake-up
    /// starts `min` lanes, at least one), and unloads at once for `min` 0.
    pub fn scale(&self, min: usize, max: usize) -> Result<(), ScaleError> {
        let mut lanes = lock(&self.lanes);
        if self.elastic.is_some() && (min == 0 || self.lane_ctx.is_cold()) {
            *lock(&self.workers_range) = (min, max);
            lock(&self.reserved).take();
            if !self.lane_ctx.is_cold() && self.lane_ctx.set_cold(&self.queue_rx, true) {
                self.unload(&mut lanes);
            }
            return Ok(());
        }
        let before = self.workers_range();
        let started = lanes.len();
        let mut reservation = self.reserve(&lanes, min)?;
        *lock(&self.workers_range) = (min, max);
        if let Err(e) = self.start_lanes(&mut lanes, min, &mut reservation) {
            let added = lanes.split_off(started);
            crate::worker::stop_all(added, self.stop_deadline());
            *lock(&self.workers_range) = before;
            self.publish_workers(lanes.len());
            return Err(e);
        }
        let keep = min.min(lanes.len());
        let removed = lanes.split_off(keep);
        self.stop_lanes(removed, lanes.len());
        self.publish_workers(lanes.len());
        Ok(())
    }

    /// Reserves the instance slots that `min` lanes need beyond the running ones (and
    /// beyond what registration reserved already).
    fn reserve(&self, lanes: &[Lane], min: usize) -> Result<Reservation, ScaleError> {
        let mut held = lock(&self.reserved);
        let have = held.as_ref().map_or(0, Reservation::len);
        let need = min.saturating_sub(lanes.len());
        let mut more = self
            .lane_ctx
            .handler
            .slots()
            .reserve(need.saturating_sub(have))
            .map_err(|source| self.full(min, source))?;
        if let Some(r) = held.take() {
            more.absorb(r);
        }
        Ok(more)
    }

    /// Holds the slots that `min` workers need beyond the running ones until the next
    /// [`ModelVersion::scale`] (an asynchronous registration or scaling), so that what
    /// was accepted can start.
    pub fn reserve_workers(&self, min: usize) -> Result<(), ScaleError> {
        if self.elastic.is_some() && self.lane_ctx.is_cold() {
            return Ok(());
        }
        let n = min.saturating_sub(self.workers());
        let r = self
            .lane_ctx
            .handler
            .slots()
            .reserve(n)
            .map_err(|source| self.full(min, source))?;
        let mut held = lock(&self.reserved);
        match held.as_mut() {
            Some(h) => h.absorb(r),
            None => *held = Some(r),
        }
        Ok(())
    }

    fn full(&self, min: usize, source: SlotsFull) -> ScaleError {
        ScaleError::Full {
            model: self.name.clone(),
            version: self.version.clone(),
            min,
            source,
        }
    }

    fn start_lanes(
        &self,
        lanes: &mut Vec<Lane>,
        n: usize,
        reservation: &mut Reservation,
    ) -> Result<(), ScaleError> {
        while lanes.len() < n {
            let id = lanes.iter().map(|l| l.state.id + 1).max().unwrap_or(0);
            let name = format!("{}-{}", self.name, self.version);
            let slot = reservation
                .take_one()
                .ok_or_else(|| ScaleError::Start("no instance slot reserved".into()))?;
            let placement = self
                .lane_ctx
                .next_placement(lanes.iter().map(|l| l.state.placement));
            let lane = Lane::start(
                id,
                &name,
                self.lane_ctx.clone(),
                self.queue_rx.clone(),
                slot,
                placement,
            )
            .map_err(|e| ScaleError::Start(e.to_string()))?;
            lanes.push(lane);
        }
        Ok(())
    }

    /// Wakes a cold version (a request was queued for it) on a thread of its own,
    /// unless one runs already. A job queued while a wake-up ends is seen by it or
    /// wakes the version again: nothing stays queued for lanes that will not come.
    fn wake(self: &Arc<Self>) {
        let Some(elastic) = &self.elastic else {
            return;
        };
        if elastic.waking.swap(true, Ordering::SeqCst) {
            return;
        }
        let version = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("wake-{}", self.name))
            .spawn(move || {
                let Some(elastic) = &version.elastic else {
                    return;
                };
                loop {
                    if let Err(why) = version.warm_up() {
                        tracing::error!("{why}");
                        version.lane_ctx.fail_queued(&version.queue_rx, &why);
                    }
                    elastic.waking.store(false, Ordering::SeqCst);
                    let stranded = version.lane_ctx.is_cold() && !version.queue.is_empty();
                    if !stranded || elastic.waking.swap(true, Ordering::SeqCst) {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            elastic.waking.store(false, Ordering::SeqCst);
            self.lane_ctx.fail_queued(
                &self.queue_rx,
                &format!("cannot wake model {}: {e}", self.name),
            );
        }
    }

    /// Loads a cold version: its weights, then its `minWorkers` lanes (at least one).
    /// On failure it stays cold, nothing loaded, and says why.
    fn warm_up(&self) -> Result<(), String> {
        let mut lanes = lock(&self.lanes);
        if !self.lane_ctx.is_cold() || self.lane_ctx.is_closed() {
            return Ok(());
        }
        let started = Instant::now();
        let fail = |why: String| {
            format!(
                "Model \"{}\" version {} could not be loaded for this request: {why}",
                self.name, self.version
            )
        };
        let file = self
            .lane_ctx
            .model_file
            .as_ref()
            .ok_or_else(|| fail("it has no model file".into()))?;
        for p in &self.lane_ctx.placements {
            if p.model().is_none() {
                let model = Model::load_with(file, p.device.torch(), self.lane_ctx.jit_optimize)
                    .map_err(|e| fail(e.to_string()));
                match model {
                    Ok(m) => p.set_model(Some(Arc::new(m))),
                    Err(e) => {
                        self.drop_weights();
                        return Err(e);
                    }
                }
            }
        }
        let n = self.workers_range().0.max(1);
        let result = self
            .reserve(&lanes, n)
            .and_then(|mut r| self.start_lanes(&mut lanes, n, &mut r));
        if let Err(e) = result {
            crate::worker::stop_all(std::mem::take(&mut *lanes), self.stop_deadline());
            self.drop_weights();
            return Err(fail(e.to_string()));
        }
        self.lane_ctx.set_cold(&self.queue_rx, false);
        self.publish_workers(lanes.len());
        tracing::info!(
            "woke model {} version {}: {} worker(s) in {} ms",
            self.name,
            self.version,
            lanes.len(),
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// Unloads a version that went cold (under the lanes' lock): stops its lanes,
    /// drops its weights. Jobs queued meanwhile wait for the wake-up their submitter
    /// started.
    fn unload(&self, lanes: &mut Vec<Lane>) {
        let abandoned = crate::worker::stop_all(std::mem::take(lanes), self.stop_deadline());
        if abandoned > 0 {
            tracing::error!(
                "{abandoned} worker(s) of {} {} were abandoned while scaling to zero",
                self.name,
                self.version
            );
        }
        self.drop_weights();
        self.publish_workers(0);
        tracing::info!(
            "model {} version {} scaled to zero",
            self.name,
            self.version
        );
    }

    fn drop_weights(&self) {
        self.lane_ctx
            .placements
            .iter()
            .for_each(|p| p.set_model(None));
        release_free_memory();
    }

    /// Unloads a version that scales to zero once it has had no request for its idle
    /// time. Returns whether it did.
    pub fn unload_if_idle(&self) -> bool {
        let Some(elastic) = &self.elastic else {
            return false;
        };
        let mut lanes = lock(&self.lanes);
        if self.lane_ctx.is_cold() || lock(&elastic.last_used).elapsed() < elastic.idle {
            return false;
        }
        if !self.lane_ctx.set_cold(&self.queue_rx, true) {
            return false;
        }
        self.unload(&mut lanes);
        true
    }

    /// Whether it scales to zero and is unloaded now.
    pub fn is_cold(&self) -> bool {
        self.elastic.is_some() && self.lane_ctx.is_cold()
    }

    /// Stops `removed` lanes together, bounded by the response timeout; with none
    /// left, what is still queued is answered at once.
    fn stop_lanes(&self, removed: Vec<Lane>, left: usize) {
        if removed.is_empty() {
            return;
        }
        let abandoned = crate::worker::stop_all(removed, self.stop_deadline());
        if abandoned > 0 {
            tracing::error!(
                "{abandoned} worker(s) of {} {} were abandoned: their forward did not return within responseTimeout",
                self.name,
                self.version
            );
        }
        if left == 0 {
            self.lane_ctx
                .fail_queued(&self.queue_rx, &self.lane_ctx.no_worker_message());
        }
    }

    /// How long stopping a lane may wait for its batch in flight.
    fn stop_deadline(&self) -> Instant {
        Instant::now() + self.settings.response_timeout + Duration::from_secs(1)
    }

    fn publish_workers(&self, n: usize) {
        if self.serving.load(Ordering::Acquire) {
            crate::metrics::global().set_workers(&self.name, &self.version, n);
        }
    }

    /// `(minWorkers, maxWorkers)`.
    pub fn workers_range(&self) -> (usize, usize) {
        *lock(&self.workers_range)
    }

    /// Takes the version out of service: waits (up to the response timeout) until no
    /// request is queued, stops every lane (a lane finishes its batch in flight first;
    /// one whose forward does not return is abandoned after the response timeout) and
    /// answers whatever is left. Nothing is queued from the start of the drain on.
    pub fn drain(&self) {
        self.lane_ctx.close();
        let deadline = Instant::now() + self.settings.response_timeout;
        while !self.queue.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop_everything();
    }

    /// Takes the version out of service and tells its lanes to stop, without waiting.
    pub fn begin_stop(&self) {
        self.lane_ctx.close();
        for lane in lock(&self.lanes).iter() {
            lane.signal_stop();
        }
    }

    fn stop_everything(&self) {
        self.lane_ctx.close();
        let lanes = std::mem::take(&mut *lock(&self.lanes));
        self.stop_lanes(lanes, 0);
        self.lane_ctx.fail_queued(
            &self.queue_rx,
            &format!(
                "Model \"{}\" version {} was unregistered before a worker took the request",
                self.name, self.version
            ),
        );
        self.publish_workers(0);
    }

    /// Where the version stands: its settings, each worker's health, its queue.
    pub fn status(&self) -> ModelStatus {
        let (min_workers, max_workers) = self.workers_range();
        let workers: Vec<WorkerStatus> = self.lane_ctx.lane_health();
        let pending = self.queue.len().min(self.settings.job_queue_size);
        let scale_to_zero = self
            .elastic
            .as_ref()
            .map(|e| crate::core::status::ScaleToZero {
                idle: e.idle,
                loaded: !self.lane_ctx.is_cold(),
            });
        ModelStatus {
            scale_to_zero,
            name: self.name.clone(),
            version: self.version.clone(),
            url: self.url.clone(),
            runtime: self.runtime.clone(),
            min_workers,
            max_workers,
            batch_size: self.settings.batch_size,
            max_batch_delay: self.settings.max_batch_delay,
            response_timeout: self.settings.response_timeout,
            loaded_at_startup: self.loaded_at_startup,
            workers,
            queue_capacity: self.settings.job_queue_size - pending,
            queue_pending: pending,
        }
    }

    /// Number of running lanes.
    pub fn workers(&self) -> usize {
        lock(&self.lanes).len()
    }

    /// Lanes that could take a request now (running, with a working instance, within
    /// their time).
    pub fn ready_workers(&self) -> usize {
        self.lane_ctx.ready_lanes()
    }

    /// Queues a job if a lane can take it (or wakes a cold version for it); else
    /// gives it back with the reason.
    pub fn submit(self: &Arc<Self>, job: Job) -> Result<(), SubmitError> {
        if let Some(e) = &self.elastic {
            *lock(&e.last_used) = Instant::now();
        }
        if self.lane_ctx.submit(&self.queue, job)? == Queued::Cold {
            self.wake();
        }
        Ok(())
    }

    /// Whether this version is a pipeline (a `pipeline` component, no model of its own).
    pub fn is_pipeline(&self) -> bool {
        self.lane_ctx.is_pipeline()
    }

    /// TorchServe's 503 message for this model without a worker.
    pub fn no_worker_message(&self) -> String {
        self.lane_ctx.no_worker_message()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for ModelVersion {
    fn drop(&mut self) {
        self.stop_everything();
        if self.serving.load(Ordering::Acquire) {
            crate::metrics::global().remove_model(&self.name, &self.version);
        }
    }
}

/// All versions of one model.
#[derive(Default)]
pub struct ModelEntry {
    /// The version `/predictions/{name}` answers with: the first one registered.
    pub default_version: String,
    pub versions: BTreeMap<String, Arc<ModelVersion>>,
}

/// Lookup failures, in TorchServe's words.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("Model not found: {0}")]
    ModelNotFound(String),
    #[error("Model version: {version} does not exist for model: {model}")]
    VersionNotFound { model: String, version: String },
}

fn conflict(v: &ModelVersion) -> String {
    format!(
        "Model version {} for model {} already registered.",
        v.version, v.name
    )
}

/// Why a model could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// That name and version are already served.
    #[error("{0}")]
    Conflict(String),
    /// Its workers could not start; nothing was registered.
    #[error(transparent)]
    Scale(ScaleError),
}

/// Why a version could not be unregistered.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("Cannot remove default version for model {0}")]
    DefaultVersion(String),
}

/// The served models.
#[derive(Default)]
pub struct Registry {
    models: RwLock<BTreeMap<String, ModelEntry>>,
    /// How pipelines loaded here reach the models (set once by the core).
    model_caller: std::sync::OnceLock<Arc<dyn ModelCaller>>,
}

impl Registry {
    /// Sets how pipelines reach the models (once; later calls are ignored). A registry
    /// without one loads pipelines that may call no model.
    pub fn set_model_caller(&self, caller: Arc<dyn ModelCaller>) {
        let _ = self.model_caller.set(caller);
    }

    /// How pipelines loaded here reach the models, once set.
    pub fn model_caller(&self) -> Option<&Arc<dyn ModelCaller>> {
        self.model_caller.get()
    }

    /// Loads `request`, optionally starts its `minWorkers` lanes, and registers it. On
    /// any failure nothing is registered and the extracted archive is gone.
    pub fn register(
        &self,
        request: &LoadRequest,
        server: &ServerConfig,
        runtime: &HandlerRuntime,
        work_dir: &Path,
        start_workers: bool,
    ) -> Result<Arc<ModelVersion>, RegisterError> {
        let version =
            ModelVersion::load(request, server, runtime, work_dir, self.model_caller.get())?;
        if self.get(&version.name, Some(&version.version)).is_ok() {
            return Err(RegisterError::Conflict(conflict(&version)));
        }
        let (min, max) = version.workers_range();
        if start_workers {
            version.scale(min, max).map_err(RegisterError::Scale)?;
        } else {
            version.reserve_workers(min).map_err(RegisterError::Scale)?;
        }
        self.insert(version).map_err(RegisterError::Conflict)
    }

    /// Adds a loaded version; the first version of a model becomes its default.
    /// Fails when that version is already registered (the version is then dropped
    /// without touching the registered one).
    pub fn insert(&self, version: ModelVersion) -> Result<Arc<ModelVersion>, String> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let entry = models.entry(version.name.clone()).or_default();
        if entry.versions.contains_key(&version.version) {
            let message = conflict(&version);
            if entry.versions.is_empty() {
                models.remove(&version.name);
            }
            return Err(message);
        }
        if entry.versions.is_empty() {
            entry.default_version = version.version.clone();
        }
        version.serving.store(true, Ordering::Release);
        version.publish_workers(version.workers());
        let version = Arc::new(version);
        entry
            .versions
            .insert(version.version.clone(), version.clone());
        Ok(version)
    }

    /// The version `version` of `name`, or its default version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ModelVersion>, LookupError> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let entry = models
            .get(name)
            .ok_or_else(|| LookupError::ModelNotFound(name.to_string()))?;
        let v = version.unwrap_or(&entry.default_version);
        entry
            .versions
            .get(v)
            .cloned()
            .ok_or_else(|| LookupError::VersionNotFound {
                model: name.to_string(),
                version: v.to_string(),
            })
    }

    /// Every version of `name`, in version order.
    pub fn versions(&self, name: &str) -> Result<Vec<Arc<ModelVersion>>, LookupError> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let entry = models
            .get(name)
            .ok_or_else(|| LookupError::ModelNotFound(name.to_string()))?;
        Ok(entry.versions.values().cloned().collect())
    }

    /// `(name, default version)` of every model, sorted by name.
    pub fn list(&self) -> Vec<(String, Arc<ModelVersion>)> {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .iter()
            .filter_map(|(name, e)| {
                Some((name.clone(), e.versions.get(&e.default_version)?.clone()))
            })
            .collect()
    }

    /// Makes `version` the default of `name`.
    pub fn set_default(&self, name: &str, version: &str) -> Result<(), LookupError> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let entry = models
            .get_mut(name)
            .ok_or_else(|| LookupError::ModelNotFound(name.to_string()))?;
        if !entry.versions.contains_key(version) {
            return Err(LookupError::VersionNotFound {
                model: name.to_string(),
                version: version.to_string(),
            });
        }
        entry.default_version = version.to_string();
        Ok(())
    }

    /// Takes `version` (default: the default version) of `name` out of service and
    /// returns it; the caller drains it. The default version cannot go while others stay.
    pub fn remove(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<ModelVersion>, RemoveError> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let entry = models
            .get_mut(name)
            .ok_or_else(|| LookupError::ModelNotFound(name.to_string()))?;
        let v = version.unwrap_or(&entry.default_version).to_string();
        if !entry.versions.contains_key(&v) {
            return Err(LookupError::VersionNotFound {
                model: name.to_string(),
                version: v,
            }
            .into());
        }
        if v == entry.default_version && entry.versions.len() > 1 {
            return Err(RemoveError::DefaultVersion(name.to_string()));
        }
        let removed = entry.versions.remove(&v).expect("checked above");
        if entry.versions.is_empty() {
            models.remove(name);
        }
        Ok(removed)
    }

    /// Whether every version has at least its `minWorkers` ready (TorchServe's
    /// `/ping`): a worker without a working handler instance does not count.
    pub fn healthy(&self) -> bool {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .values()
            .flat_map(|e| e.versions.values())
            .all(|v| v.is_cold() || v.ready_workers() >= v.workers_range().0)
    }

    /// Unloads the versions that scale to zero and have been idle for their time.
    pub fn reap_idle(&self) {
        let versions: Vec<Arc<ModelVersion>> = {
            let models = self.models.read().unwrap_or_else(|p| p.into_inner());
            models
                .values()
                .flat_map(|e| e.versions.values())
                .filter(|v| v.elastic.is_some())
                .cloned()
                .collect()
        };
        for v in versions {
            v.unload_if_idle();
        }
    }

    /// Starts the reaper: a thread that calls [`Registry::reap_idle`] once a second
    /// while the registry lives.
    pub fn start_reaper(self: &Arc<Self>) {
        let registry = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("scale-to-zero".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    match registry.upgrade() {
                        Some(r) => r.reap_idle(),
                        None => break,
                    }
                }
            });
    }

    /// Removes every model, stopping their lanes: all are told to stop first, so that
    /// their waits overlap (each bounded by its version's response timeout).
    pub fn clear(&self) {
        let drained = std::mem::take(&mut *self.models.write().unwrap_or_else(|p| p.into_inner()));
        for version in drained.values().flat_map(|e| e.versions.values()) {
            version.begin_stop();
        }
        drop(drained);
    }
}

/// Resolves a `--models` / `load_models` entry against the model store: `name=file`,
/// `file` (name from the manifest) or a path. Returns `(url, path)`.
pub fn resolve_archive(
    entry: &str,
    model_store: Option<&Path>,
) -> (Option<String>, String, PathBuf) {
    let (name, file) = match entry.split_once('=') {
        Some((n, f)) => (Some(n.trim().to_string()), f.trim()),
        None => (None, entry.trim()),
    };
    let file = file.strip_prefix("file://").unwrap_or(file);
    let path = match model_store {
        Some(store) if !Path::new(file).is_absolute() => store.join(file),
        _ => PathBuf::from(file),
    };
    (name, file.to_string(), path)
}
