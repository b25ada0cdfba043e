//! Registering a workflow: every check first (the archive, the specification, the
//! graph, the names, each model's archive), then its models registered together as
//! `<workflow>__<node>` and its function component started; all or nothing: a failure
//! unregisters what had started. Unregistering takes the workflow out of service,
//! then its models, after the requests already queued for them are answered.
//!
//! Workflows, like TorchServe's, are not in the snapshot: their models are left out of
//! it too, so that a restart does not bring them back without their workflow.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::dag::Dag;
use super::spec::{self, NodeSettings};
use super::{Core, Error, Node, NodeKind, Workflow, model_name};
use crate::archive::war::OpenedWar;
use crate::config::ModelOverrides;
use crate::registry::{LoadRequest, ModelVersion};

/// What to register.
#[derive(Clone, Debug, Default)]
pub struct WorkflowRegistration {
    /// The `.war`: a model-store file name, `file://…` or `http(s)://…`.
    pub url: String,
    /// The name to serve it under (default: the manifest's `workflowName`).
    pub name: Option<String>,
}

/// The same kind of error with another message (the node's name in front).
pub(super) fn reworded(e: &Error, message: String) -> Error {
    match e {
        Error::InvalidInput(_) => Error::InvalidInput(message),
        Error::Conflict(_) => Error::Conflict(message),
        Error::Unavailable(_) => Error::Unavailable(message),
        Error::Internal(_) => Error::Internal(message),
        Error::Download(_) => Error::Download(message),
        e => Error::Prediction {
            status: e.status(),
            message,
        },
    }
}

fn invalid_spec(file: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid workflow specification {file}: {why}"))
}

/// Whole seconds at least `ms` long (a model's `responseTimeout`).
fn ceil_secs(ms: u64) -> Duration {
    Duration::from_secs(ms.div_ceil(1000).max(1))
}

/// The model-config overrides a node's settings make.
fn overrides(s: &NodeSettings) -> ModelOverrides {
    ModelOverrides {
        batch_size: Some(s.batch_size),
        max_batch_delay: Some(Duration::from_millis(s.max_batch_delay)),
        response_timeout: Some(ceil_secs(s.timeout_ms)),
        initial_workers: Some(s.min_workers),
        max_workers: Some(s.max_workers),
    }
}

/// Why a handler named by a war cannot run function nodes, if it cannot.
pub fn handler_refusal(handler: &str) -> Option<String> {
    if handler.ends_with(".py") || handler.contains(".py:") {
        return Some(format!(
            "the workflow's handler {handler} is a TorchServe Python handler: wasmserve runs a \
             workflow's function nodes as one WebAssembly component of the `pipeline` world \
             (wit/handler.wit), whose `handle` is called with the node's name in the \
             {} header. Write the functions as such a component (see \
             examples/workflow_join) and make the war with `wasmserve workflow-archive \
             --handler funcs.wasm …`",
            super::NODE_HEADER
        ));
    }
    if !handler.ends_with(".wasm") {
        return Some(format!(
            "the workflow's handler {handler:?} is not a .wasm component (a `pipeline` \
             component holding the function nodes)"
        ));
    }
    None
}

/// The checks that need no server: the specification parses, its graph is a DAG,
/// every model is a node, and function nodes have a handler. Returns the spec, the
/// graph and the function nodes' names.
pub fn check_spec(
    spec_file: &str,
    text: &str,
    handler: Option<&str>,
) -> Result<(spec::Spec, Dag, Vec<String>), Error> {
    let spec = spec::parse(text).map_err(|e| invalid_spec(spec_file, e))?;
    let dag = Dag::new(&spec.dag).map_err(|e| invalid_spec(spec_file, e))?;
    if let Some(unused) = spec.models.iter().find(|m| !dag.nodes.contains(&m.name)) {
        return Err(invalid_spec(
            spec_file,
            format!(
                "model {} is declared under models: but is no node of the dag",
                unused.name
            ),
        ));
    }
    let functions: Vec<String> = dag
        .nodes
        .iter()
        .filter(|n| spec.model(n).is_none())
        .cloned()
        .collect();
    if !functions.is_empty() && handler.is_none() {
        return Err(invalid_spec(
            spec_file,
            format!(
                "the nodes {} are not models under models:, so they are functions of the \
                 workflow's handler, and the archive has none: declare them as models, or \
                 add a handler (a `pipeline` component, --handler funcs.wasm)",
                functions.join(", ")
            ),
        ));
    }
    if let Some(why) = handler.and_then(handler_refusal) {
        return Err(Error::invalid(why));
    }
    Ok((spec, dag, functions))
}

impl Core {
    /// Registers a workflow archive: its models as `<workflow>__<node>`, its function
    /// component, then the workflow. TorchServe's answers: 409 for a name already
    /// registered, 400 with the reason for an archive or specification it cannot run.
    pub async fn register_workflow(
        self: &Arc<Self>,
        r: WorkflowRegistration,
    ) -> Result<Arc<Workflow>, Error> {
        self.enabled()?;
        if r.url.is_empty() {
            return Err(Error::invalid("Parameter url is required."));
        }
        if let Some(name) = &r.name {
            crate::archive::validate_model_name(name).map_err(Error::InvalidInput)?;
        }
        let _one_at_a_time = self.workflows.registering.lock().await;
        if let Some(name) = r.name.as_deref().filter(|n| self.workflows.contains(n)) {
            return Err(already(name));
        }
        let downloaded = r.url.starts_with("http://") || r.url.starts_with("https://");
        let path = if downloaded {
            self.download(&r.url).await?
        } else {
            self.archive_path(&r.url).map_err(|e| match e {
                Error::ArchiveNotFound(u) => {
                    Error::ArchiveNotFound(format!("{u} (workflow archive)"))
                }
                e => e,
            })?
        };
        let core = self.clone();
        let load_path = path.clone();
        let result = tokio::task::spawn_blocking(move || core.load_workflow(&r, &load_path)).await;
        if !matches!(result, Ok(Ok(_))) && downloaded {
            let _ = std::fs::remove_file(&path);
        }
        let workflow = Arc::new(result??);
        self.workflows
            .write()
            .insert(workflow.name.clone(), workflow.clone());
        tracing::info!(
            "workflow {} registered: nodes {}",
            workflow.name,
            workflow.dag.nodes.join(", ")
        );
        Ok(workflow)
    }

    /// The blocking part of a registration: opening, checking, loading.
    fn load_workflow(&self, r: &WorkflowRegistration, path: &Path) -> Result<Workflow, Error> {
        let war = OpenedWar::open(path, &self.work_dir, self.config.archive_limits)
            .map_err(|e| Error::invalid(format!("Invalid workflow archive {}: {e}", r.url)))?;
        let name = r
            .name
            .clone()
            .unwrap_or_else(|| war.manifest.workflow.workflow_name.clone());
        if self.workflows.contains(&name) {
            return Err(already(&name));
        }
        let spec_file = war.manifest.workflow.spec_file.clone();
        let text = war.spec_text().map_err(|e| invalid_spec(&spec_file, e))?;
        let handler = war.manifest.workflow.handler.clone();
        let (spec, dag, functions) = check_spec(&spec_file, &text, handler.as_deref())?;

        // Each model's name and archive, before anything loads.
        let mut loads = Vec::new();
        for m in &spec.models {
            let full = model_name(&name, &m.name);
            crate::archive::validate_model_name(&full)
                .map_err(|e| invalid_spec(&spec_file, format!("model {}: {e}", m.name)))?;
            if self.registry.get(&full, None).is_ok() {
                return Err(Error::Conflict(format!(
                    "Model {full} is already registered: workflow {name} registers its node {} \
                     under that name",
                    m.name
                )));
            }
            let archive = self.node_archive(&war.dir, &m.name, &m.url)?;
            loads.push(LoadRequest {
                name: Some(full),
                url: m.url.clone(),
                path: archive,
                overrides: overrides(&m.settings),
                at_startup: false,
                handler: None,
                workflow: Some(name.clone()),
            });
        }

        let functions_version = match (&handler, functions.is_empty()) {
            (Some(h), false) => Some(Arc::new(self.load_functions(
                &war,
                &name,
                h,
                &spec.defaults,
                functions.len(),
            )?)),
            _ => None,
        };
        let models = self.register_models(&name, &loads)?;
        let nodes = dag
            .nodes
            .iter()
            .map(|n| match spec.model(n) {
                Some(m) => Node {
                    kind: NodeKind::Model(models[&model_name(&name, n)].clone()),
                    settings: m.settings,
                },
                None => Node {
                    kind: NodeKind::Function,
                    settings: spec.defaults,
                },
            })
            .collect();
        Ok(Workflow {
            name,
            url: r.url.clone(),
            spec,
            dag,
            nodes,
            functions: functions_version,
            _war: war,
        })
    }

    /// A model node's archive: a file of the war of that name, else the model store's
    /// (or a `file://` path), as model registration finds it.
    fn node_archive(&self, war_dir: &Path, node: &str, url: &str) -> Result<PathBuf, Error> {
        let plain = !url.contains('/') && !url.contains('\\') && !url.starts_with('.');
        if plain && war_dir.join(url).is_file() {
            return Ok(war_dir.join(url));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Err(Error::invalid(format!(
                "Workflow node {node}: url {url}: wasmserve does not download a workflow's \
                 models; put the .mar in the model store or in the workflow archive"
            )));
        }
        self.archive_path(url).map_err(|e| match e {
            Error::ArchiveNotFound(u) => Error::ArchiveNotFound(format!(
                "{u} (the .mar of workflow node {node}, in neither the workflow archive nor the model store)"
            )),
            e => reworded(&e, format!("Workflow node {node}: {e}")),
        })
    }

    /// The function component, as a pipeline version of its own: one worker per
    /// function node (as TorchServe runs each function with one), bounded by the
    /// global `timeout-ms`.
    fn load_functions(
        &self,
        war: &OpenedWar,
        name: &str,
        handler: &str,
        defaults: &NodeSettings,
        count: usize,
    ) -> Result<ModelVersion, Error> {
        // The war's folder is ours: it becomes an unpacked model archive of the handler.
        let manifest = serde_json::json!({
            "runtime": "wasm",
            "model": {"modelName": name, "modelVersion": "1.0", "handler": handler},
        });
        let mar_inf = war.dir.join("MAR-INF");
        std::fs::create_dir_all(&mar_inf)
            .and_then(|()| {
                std::fs::write(
                    war.dir.join(crate::archive::MANIFEST_PATH),
                    manifest.to_string(),
                )
            })
            .map_err(Error::internal)?;
        let request = LoadRequest {
            name: Some(model_name(name, "functions")),
            url: handler.to_string(),
            path: war.dir.clone(),
            overrides: ModelOverrides {
                response_timeout: Some(ceil_secs(defaults.timeout_ms)),
                initial_workers: Some(count),
                max_workers: Some(count),
                ..Default::default()
            },
            at_startup: false,
            handler: None,
            workflow: Some(name.to_string()),
        };
        let fail = |e: String| {
            Error::invalid(format!(
                "Workflow {name}: its handler {handler} cannot run: {e}"
            ))
        };
        let version = ModelVersion::load(
            &request,
            &self.config,
            &self.runtime,
            &self.work_dir,
            self.registry.model_caller(),
        )
        .map_err(|e| fail(e.message))?;
        if !version.is_pipeline() {
            return Err(fail(
                "it is a `handler` component; function nodes are the `handle` of a \
                 `pipeline` component"
                    .into(),
            ));
        }
        version
            .scale(count, count)
            .map_err(|e| fail(e.to_string()))?;
        Ok(version)
    }

    /// Registers the workflow's models together (each with its workers started);
    /// on any failure, unregisters those that were and fails with every reason.
    fn register_models(
        &self,
        workflow: &str,
        loads: &[LoadRequest],
    ) -> Result<std::collections::HashMap<String, Arc<ModelVersion>>, Error> {
        let results: Vec<_> = std::thread::scope(|s| {
            let jobs: Vec<_> = loads
                .iter()
                .map(|l| {
                    s.spawn(move || {
                        self.registry
                            .register(l, &self.config, &self.runtime, &self.work_dir, true)
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join().unwrap_or_else(|_| {
                        Err(crate::registry::RegisterError::Conflict(
                            "a registration thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let mut done = std::collections::HashMap::new();
        let mut failures = Vec::new();
        let mut first: Option<Error> = None;
        for (l, r) in loads.iter().zip(results) {
            let full = l.name.clone().unwrap_or_default();
            match r {
                Ok(v) => {
                    done.insert(full, v);
                }
                Err(e) => {
                    let e = Error::from(e);
                    failures.push(format!(
                        "Workflow Node {full} failed to register. Details: {e}"
                    ));
                    first.get_or_insert(e);
                }
            }
        }
        let Some(first) = first else {
            return Ok(done);
        };
        for full in done.keys() {
            if let Ok(v) = self.registry.remove(full, None) {
                v.drain();
            }
        }
        Err(reworded(
            &first,
            format!(
                "Workflow {workflow} has failed to register. Failures: [{}]",
                failures.join(", ")
            ),
        ))
    }

    /// Takes a workflow out of service, then its models and function component, after
    /// the requests already queued for them are answered.
    pub async fn unregister_workflow(self: &Arc<Self>, name: &str) -> Result<(), Error> {
        self.enabled()?;
        let workflow = self
            .workflows
            .write()
            .remove(name)
            .ok_or_else(|| Error::WorkflowNotFound(name.to_string()))?;
        let core = self.clone();
        tokio::task::spawn_blocking(move || {
            for full in workflow.model_names() {
                match core.registry.remove(&full, None) {
                    Ok(v) => v.drain(),
                    Err(e) => tracing::warn!("unregistering workflow model {full}: {e}"),
                }
            }
            if let Some(f) = &workflow.functions {
                f.drain();
            }
        })
        .await?;
        tracing::info!("workflow {name} unregistered");
        Ok(())
    }
}

fn already(name: &str) -> Error {
    Error::Conflict(format!("Workflow {name} is already registered."))
}
