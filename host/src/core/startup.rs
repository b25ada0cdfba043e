//! Loading what the server starts with: the `--models` / `load_models` entries (`all`:
//! every archive in the model store), or the models a snapshot records, with their
//! settings, workers and defaults.

use std::sync::Arc;

use super::Core;
use crate::registry::{LoadRequest, resolve_archive};

/// How loading the startup models went.
#[derive(Debug, Default)]
pub struct StartupReport {
    /// Whether a snapshot's models were all restored (true without a snapshot).
    pub whole: bool,
    /// Each model that was not loaded, and why.
    pub failures: Vec<String>,
}

impl Core {
    /// Loads the startup models (a snapshot's when the configuration has one) and
    /// marks the startup done. A model that fails is reported and the others load,
    /// as TorchServe does.
    pub async fn load_startup(self: &Arc<Self>) -> StartupReport {
        let report = match self.config.model_snapshot.clone() {
            Some(snapshot) => restore_snapshot(self, &snapshot).await,
            None => StartupReport {
                whole: true,
                failures: load_startup_models(self).await,
            },
        };
        self.startup_done();
        report
    }
}

/// Whether `path` is something `all` loads: a `.mar`, a `.tar.gz`/`.tgz` archive or an
/// unpacked archive folder.
fn is_archive(path: &std::path::Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".mar")
        || name.ends_with(".tar.gz")
        || name.ends_with(".tgz")
        || path.join(crate::archive::MANIFEST_PATH).is_file()
}

/// Loads the `load_models` entries; returns what failed.
async fn load_startup_models(core: &Arc<Core>) -> Vec<String> {
    let config = &core.config;
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    for entry in &config.load_models {
        // TorchServe matches `all` in any case (`ALL` in its docs).
        if entry.eq_ignore_ascii_case("all") {
            let Some(store) = &config.model_store else {
                failures.push("`all` needs a model store (--model-store)".to_string());
                continue;
            };
            match std::fs::read_dir(store) {
                Ok(dir) => {
                    let mut names = Vec::new();
                    for e in dir.filter_map(|e| e.ok()) {
                        let file = e.file_name().to_string_lossy().into_owned();
                        if is_archive(&e.path()) {
                            names.push(file);
                        } else if !file.starts_with('.') && file != "logs" {
                            tracing::info!(
                                "`all` skips {file}: not a model archive (.mar, .tar.gz, .tgz or an unpacked archive folder)"
                            );
                        }
                    }
                    names.sort();
                    entries.extend(names);
                }
                Err(e) => failures.push(format!(
                    "cannot list the model store {}: {e}",
                    store.display()
                )),
            }
        } else {
            entries.push(entry.clone());
        }
    }
    for entry in entries {
        let (name, url, path) = resolve_archive(&entry, config.model_store.as_deref());
        let request = LoadRequest {
            name,
            url,
            path,
            at_startup: true,
            ..Default::default()
        };
        let state = core.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            state.registry.register(
                &request,
                &state.config,
                &state.runtime,
                &state.work_dir,
                true,
            )
        })
        .await;
        match result {
            Ok(Ok(v)) => tracing::info!(
                "loaded model {} version {} from {} with {} worker(s) in {} ms",
                v.name,
                v.version,
                v.url,
                v.workers(),
                started.elapsed().as_millis()
            ),
            Ok(Err(e)) => failures.push(format!("{entry}: {e}")),
            Err(e) => failures.push(format!("{entry}: loading it panicked: {e}")),
        }
    }
    for f in &failures {
        tracing::error!("startup model not loaded: {f}");
    }
    failures
}

/// Loads the models a snapshot records, with their settings, workers and defaults.
async fn restore_snapshot(core: &Arc<Core>, snapshot: &str) -> StartupReport {
    let models = match crate::snapshot::parse_models(snapshot) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("the snapshot's model_snapshot is unusable: {e}");
            return StartupReport {
                whole: false,
                failures: vec![format!("model_snapshot is unusable: {e}")],
            };
        }
    };
    let mut failures = Vec::new();
    let mut whole = true;
    for m in models {
        let (_, url, path) = resolve_archive(&m.url, core.config.model_store.as_deref());
        let request = LoadRequest {
            name: Some(m.name.clone()),
            url,
            path,
            at_startup: true,
            handler: None,
            overrides: crate::config::ModelOverrides {
                batch_size: Some(m.batch_size),
                max_batch_delay: Some(std::time::Duration::from_millis(m.max_batch_delay_ms)),
                response_timeout: Some(std::time::Duration::from_secs(m.response_timeout_s)),
                initial_workers: Some(m.min_workers),
                max_workers: None,
            },
            workflow: None,
        };
        let (state2, label) = (core.clone(), format!("{} {}", m.name, m.version));
        let result = tokio::task::spawn_blocking(move || {
            let v = state2.registry.register(
                &request,
                &state2.config,
                &state2.runtime,
                &state2.work_dir,
                false,
            )?;
            v.scale(m.min_workers, m.max_workers.max(m.min_workers))
                .map_err(crate::registry::RegisterError::Scale)?;
            if m.default {
                let _ = state2.registry.set_default(&m.name, &m.version);
            }
            Ok::<_, crate::registry::RegisterError>(v)
        })
        .await;
        match result {
            Ok(Ok(v)) => tracing::info!(
                "restored model {} version {} with {} worker(s)",
                v.name,
                v.version,
                v.workers()
            ),
            Ok(Err(e)) => {
                tracing::error!("restoring {label}: {e}");
                failures.push(format!("{label}: {e}"));
                whole = false;
            }
            Err(e) => {
                tracing::error!("restoring {label} panicked: {e}");
                failures.push(format!("{label}: restoring it panicked: {e}"));
                whole = false;
            }
        }
    }
    StartupReport { whole, failures }
}
