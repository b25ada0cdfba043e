//! The lifecycle operations: register, scale, unregister, set the default version.
//! Each is whole or nothing, and writes a snapshot once it happened (never of a state
//! that was refused). Archives come from the model store (a file name, no folders), a
//! `file://` path, or an `http(s)://` URL downloaded into the store; the URLs must
//! match `allowed_urls`.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Core, Error};
use crate::config::ModelOverrides;
use crate::registry::{LoadRequest, ModelVersion};

/// What to register.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// The archive: a model-store file name, `file://…` or `http(s)://…`.
    pub url: String,
    /// The name to serve it under (default: the manifest's).
    pub name: Option<String>,
    pub overrides: ModelOverrides,
    /// A built-in handler instead of the archive's.
    pub handler: Option<String>,
    /// Start the workers before answering (else after).
    pub synchronous: bool,
}

/// A registration that happened.
pub enum Registered {
    /// With its `minWorkers` running.
    Ready(Arc<ModelVersion>),
    /// Registered; its workers are starting.
    Starting(Arc<ModelVersion>),
}

/// A scaling that was accepted.
pub enum Scaled {
    Done,
    /// Running after the answer (the workers it needs are reserved).
    Started,
}

impl Core {
    pub(super) fn enabled(&self) -> Result<(), Error> {
        match self.config.enable_model_api {
            true => Ok(()),
            false => Err(Error::ModelApiDisabled),
        }
    }

    /// Registers an archive. Parameters are checked before anything is downloaded; a
    /// failed registration leaves nothing behind, a downloaded archive included.
    pub async fn register(self: &Arc<Self>, r: Registration) -> Result<Registered, Error> {
        self.enabled()?;
        if r.url.is_empty() {
            return Err(Error::invalid("the registration names no archive (url)"));
        }
        if let Some(name) = &r.name {
            crate::archive::validate_model_name(name).map_err(Error::InvalidInput)?;
        }
        let downloaded = r.url.starts_with("http://") || r.url.starts_with("https://");
        let path = if downloaded {
            self.download(&r.url).await?
        } else {
            self.archive_path(&r.url)?
        };
        let request = LoadRequest {
            name: r.name,
            url: r.url,
            path: path.clone(),
            overrides: r.overrides,
            at_startup: false,
            handler: r.handler,
            workflow: None,
        };
        let (core, synchronous) = (self.clone(), r.synchronous);
        let result = tokio::task::spawn_blocking(move || {
            core.registry.register(
                &request,
                &core.config,
                &core.runtime,
                &core.work_dir,
                synchronous,
            )
        })
        .await;
        if !matches!(result, Ok(Ok(_))) && downloaded {
            let _ = std::fs::remove_file(&path);
        }
        let version = result??;
        self.snapshot();
        if synchronous {
            return Ok(Registered::Ready(version));
        }
        let (min, max) = version.workers_range();
        let (core, starting) = (self.clone(), version.clone());
        tokio::task::spawn_blocking(move || match starting.scale(min, max) {
            Ok(()) => core.snapshot(),
            Err(e) => tracing::error!(
                "starting workers of {} {}: {e}",
                starting.name,
                starting.version
            ),
        });
        Ok(Registered::Starting(version))
    }

    /// Downloads an `http(s)://` archive into the model store.
    pub(super) async fn download(self: &Arc<Self>, url: &str) -> Result<PathBuf, Error> {
        let store = self.config.model_store.clone().ok_or_else(|| {
            Error::invalid("The server has no model store (--model-store) to download into")
        })?;
        let (url, core) = (url.to_string(), self.clone());
        tokio::task::spawn_blocking(move || crate::download::download(&url, &store, &core.config))
            .await?
            .map_err(|e| match e {
                crate::download::DownloadError::Exists(_) => Error::FileExists(e.to_string()),
                crate::download::DownloadError::NotAllowed(_)
                | crate::download::DownloadError::BadName(_) => Error::InvalidInput(e.to_string()),
                _ => Error::Download(e.to_string()),
            })
    }

    /// Where `url` points: a file in the model store (no folders, no `..`) or a
    /// `file://` path allowed by `allowed_urls`.
    pub fn archive_path(&self, url: &str) -> Result<PathBuf, Error> {
        let path = if let Some(p) = url.strip_prefix("file://") {
            if !self.config.url_allowed(url) {
                return Err(Error::invalid(format!(
                    "URL {url} is not allowed: add a matching pattern to allowed_urls"
                )));
            }
            PathBuf::from(p)
        } else {
            if url.contains('/') || url.contains('\\') || url == ".." || url.starts_with('.') {
                return Err(Error::invalid(format!(
                    "Invalid model url {url:?}: name a file in the model store, without folders"
                )));
            }
            let store = self.config.model_store.as_ref().ok_or_else(|| {
                Error::invalid("The server has no model store (--model-store) to register from")
            })?;
            store.join(url)
        };
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|_| Error::ArchiveNotFound(url.to_string()))?;
        if meta.file_type().is_symlink() {
            return Err(Error::invalid(format!(
                "Invalid model url {url:?}: links are not followed"
            )));
        }
        Ok(path)
    }

    /// Scales a version to `min` running workers (`max` is reported). What the server
    /// cannot run is refused now, before anything changes, even when the scaling itself
    /// runs after the answer: the slots are held for it.
    pub async fn scale(
        self: &Arc<Self>,
        name: &str,
        version: Option<&str>,
        min: usize,
        max: usize,
        synchronous: bool,
    ) -> Result<Scaled, Error> {
        let target = self.model(name, version)?;
        if max < min {
            return Err(Error::invalid("max_worker cannot be less than min_worker."));
        }
        target.reserve_workers(min)?;
        let core = self.clone();
        let job = tokio::task::spawn_blocking(move || {
            let result = target.scale(min, max);
            if result.is_ok() {
                core.snapshot();
            }
            result
        });
        if !synchronous {
            tokio::spawn(async move {
                if let Ok(Err(e)) = job.await {
                    tracing::error!("scaling workers: {e}");
                }
            });
            return Ok(Scaled::Started);
        }
        job.await??;
        Ok(Scaled::Done)
    }

    /// Takes a version out of service, after the requests already queued for it are
    /// answered.
    pub async fn unregister(
        self: &Arc<Self>,
        name: &str,
        version: Option<&str>,
    ) -> Result<(), Error> {
        self.enabled()?;
        if let Some(wf) = self
            .registry
            .get(name, version)
            .ok()
            .and_then(|v| v.workflow.clone())
        {
            return Err(Error::invalid(format!(
                "Model {name} is a node of workflow {wf}: unregister the workflow instead"
            )));
        }
        let removed = self.registry.remove(name, version)?;
        let core = self.clone();
        tokio::task::spawn_blocking(move || {
            core.snapshot();
            removed.drain()
        })
        .await?;
        Ok(())
    }

    /// Picks the version that requests without one go to.
    pub fn set_default(&self, name: &str, version: &str) -> Result<(), Error> {
        self.registry.set_default(name, version)?;
        self.snapshot();
        Ok(())
    }
}
