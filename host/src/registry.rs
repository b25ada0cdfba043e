//! The registry of served models: names → versions → a loaded [`ModelVersion`] (its
//! archive, TorchScript module, compiled handler, queue and worker lanes).
//!
//! Loading a version (`ModelVersion::load`) is blocking work: extracting the archive,
//! compiling the handler, loading the weights and starting the lanes. A failure at any
//! step leaves nothing registered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::archive::{ExtractLimits, OpenedArchive};
use crate::builtin;
use crate::config::{ModelSettings, ServerConfig};
use crate::model::Model;
use crate::runtime::{Context, HandlerRuntime, Sandbox};
use crate::worker::{Job, Lane, LaneContext};

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
    pub settings: ModelSettings,
    queue: Sender<Job>,
    /// Kept so that new lanes can attach to the queue.
    queue_rx: Receiver<Job>,
    lane_ctx: Arc<LaneContext>,
    lanes: Mutex<Vec<Lane>>,
    /// Keeps the extracted archive (the handler's `/model`) alive.
    _archive: OpenedArchive,
}

impl ModelVersion {
    /// Opens `archive_path`, loads everything and starts `settings.min_workers` lanes
    /// (at least one).
    pub fn load(
        name: Option<&str>,
        url: &str,
        archive_path: &Path,
        server: &ServerConfig,
        runtime: &HandlerRuntime,
        work_dir: &Path,
    ) -> Result<ModelVersion, LoadError> {
        let err = |message: String| LoadError {
            archive: url.to_string(),
            message,
        };
        let archive = OpenedArchive::open(archive_path, work_dir, ExtractLimits::default())
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

        let handler_name = m
            .handler
            .as_deref()
            .ok_or_else(|| err("the manifest names no handler".into()))?;
        let wasm: std::borrow::Cow<[u8]> = if handler_name.ends_with(".wasm") {
            std::fs::read(archive.dir.join(handler_name))
                .map_err(|e| err(format!("{handler_name}: {e}")))?
                .into()
        } else if let Some(bytes) = builtin::component(handler_name) {
            bytes.into()
        } else {
            return Err(err(format!(
                "handler {handler_name:?} is neither a .wasm component in the archive nor a built-in handler ({}); \
                 Python handlers cannot run in wasmserve: port the handler to a WebAssembly component",
                builtin::names().join(", ")
            )));
        };
        let handler = runtime.compile(&wasm).map_err(|e| err(e.to_string()))?;

        let serialized = m.serialized_file.as_deref().ok_or_else(|| {
            err("the manifest names no serializedFile; wasmserve serves TorchScript models (torch.jit.trace/script, then save)".into())
        })?;
        let model = Model::load(&archive.dir.join(serialized), tch::Device::Cpu)
            .map_err(|e| err(e.to_string()))?;

        let context = Context {
            model_name: model_name.clone(),
            model_version: m.model_version.clone(),
            manifest: archive.manifest_text.clone(),
            config: serde_json::Value::Object(settings.handler_config.clone()).to_string(),
            batch_size: settings.batch_size as u32,
            device: "cpu".into(),
        };
        let workers = settings.min_workers.max(1);
        let intra_op_threads = server
            .intra_op_threads
            .unwrap_or_else(|| (crate::config::num_cores() / workers).max(1));
        let lane_ctx = Arc::new(LaneContext {
            model: Arc::new(model),
            handler,
            sandbox: Sandbox {
                model_dir: archive.dir.clone(),
                context,
            },
            batch_size: settings.batch_size,
            max_batch_delay: settings.max_batch_delay,
            intra_op_threads,
            gather: Default::default(),
        });
        let (queue, queue_rx) = crossbeam_channel::bounded(settings.job_queue_size);
        let version = ModelVersion {
            name: model_name,
            version: m.model_version.clone(),
            url: url.to_string(),
            settings,
            queue,
            queue_rx,
            lane_ctx,
            lanes: Mutex::new(Vec::new()),
            _archive: archive,
        };
        version.scale_to(workers).map_err(err)?;
        Ok(version)
    }

    /// Starts or stops lanes until there are `n`.
    pub fn scale_to(&self, n: usize) -> Result<(), String> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        while lanes.len() < n {
            let id = lanes.last().map_or(0, |l| l.id + 1);
            let name = format!("{}-{}", self.name, self.version);
            let lane = Lane::start(id, &name, self.lane_ctx.clone(), self.queue_rx.clone())
                .map_err(|e| e.to_string())?;
            lanes.push(lane);
        }
        while lanes.len() > n {
            if let Some(lane) = lanes.pop() {
                lane.stop();
            }
        }
        Ok(())
    }

    /// Number of running lanes.
    pub fn workers(&self) -> usize {
        self.lanes.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Queues a job; `Err` gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }
}

impl Drop for ModelVersion {
    fn drop(&mut self) {
        let _ = self.scale_to(0);
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

/// The served models.
#[derive(Default)]
pub struct Registry {
    models: RwLock<BTreeMap<String, ModelEntry>>,
}

impl Registry {
    /// Adds a loaded version; the first version of a model becomes its default.
    /// Fails when that version is already registered.
    pub fn insert(&self, version: ModelVersion) -> Result<(), String> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let entry = models.entry(version.name.clone()).or_default();
        if entry.versions.contains_key(&version.version) {
            return Err(format!(
                "Model version {} for model {} already registered.",
                version.version, version.name
            ));
        }
        if entry.versions.is_empty() {
            entry.default_version = version.version.clone();
        }
        entry
            .versions
            .insert(version.version.clone(), Arc::new(version));
        Ok(())
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

    /// Whether every model has at least its minimum of workers running.
    pub fn healthy(&self) -> bool {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        models
            .values()
            .flat_map(|e| e.versions.values())
            .all(|v| v.workers() >= v.settings.min_workers.min(1))
    }

    /// Removes every model, stopping their lanes.
    pub fn clear(&self) {
        let drained = std::mem::take(&mut *self.models.write().unwrap_or_else(|p| p.into_inner()));
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
