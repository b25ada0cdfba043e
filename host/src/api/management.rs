//! The management API (default `127.0.0.1:8081`), TorchServe's routes, parameters,
//! status codes and bodies:
//!
//! - `GET /models?limit=&next_page_token=` lists models (sorted by name);
//! - `POST /models?url=&model_name=&batch_size=&max_batch_delay=&initial_workers=&synchronous=&response_timeout=`
//!   registers an archive (query parameters or a JSON body; needs `enable_model_api`);
//! - `GET /models/{m}`, `/models/{m}/{v}`, `/models/{m}/all` describe versions;
//! - `PUT /models/{m}[/{v}]?min_worker=&max_worker=&synchronous=` scales workers;
//! - `DELETE /models/{m}[/{v}]` unregisters (needs `enable_model_api`), after the
//!   requests already queued for it are answered;
//! - `PUT /models/{m}/{v}/set-default` picks the version `/predictions/{m}` uses;
//! - `OPTIONS /` describes this API in OpenAPI 3.
//!
//! Archives come from the model store (a file name, no folders), a `file://` path, or
//! an `http(s)://` URL downloaded into the store; the URLs must match `allowed_urls`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::client_body::ClientBody;
use hyper::{Method, Request, Response, StatusCode};

use super::{ApiError, Body, body, json_response};
use crate::config::ModelOverrides;
use crate::registry::{LoadRequest, ModelVersion, RegisterError, RemoveError};
use crate::server::ServerState;

/// What the management API needs.
pub struct ManagementApi {
    pub state: Arc<ServerState>,
}

/// Query parameters, merged with a JSON body's keys for `POST /models`.
type Params = HashMap<String, String>;

fn status(code: StatusCode, text: impl Into<String>) -> Response<Body> {
    json_response(code, &serde_json::json!({ "status": text.into() }))
}

fn int_param(params: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("Invalid value for parameter {key}: {v}"))
            })
        })
        .transpose()
}

fn uint_param(params: &Params, key: &str) -> Result<Option<usize>, ApiError> {
    match int_param(params, key)? {
        Some(n) if n < 0 => Err(ApiError::bad_request(format!(
            "Invalid value for parameter {key}: {n}"
        ))),
        other => Ok(other.map(|n| n as usize)),
    }
}

fn bool_param(params: &Params, key: &str, default: bool) -> Result<bool, ApiError> {
    match params.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "Invalid value for parameter {key}: {v}"
        ))),
    }
}

impl ManagementApi {
    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<ClientBody>,
        _request_id: String,
    ) -> Response<Body> {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn route(&self, req: Request<ClientBody>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_string();
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut params: Params = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let method = req.method().clone();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (segs.as_slice(), &method) {
            ([], &Method::OPTIONS) => {
                Ok(json_response(StatusCode::OK, &super::openapi::management()))
            }
            (["models"], &Method::GET) => self.list(&params),
            (["token"], &Method::GET) => match &self.state.auth {
                Some(auth) => {
                    let kind = params.get("type").map(String::as_str).unwrap_or("");
                    Ok(json_response(StatusCode::OK, &auth.refresh(&req, kind)?))
                }
                None => Err(ApiError::bad_request(
                    "token authorization is disabled on this server",
                )),
            },
            (["token"], _) => Err(ApiError::method_not_allowed()),
            (["models"], &Method::POST) => {
                let bytes = body::read_limited(
                    req.into_body(),
                    self.state.config.max_request_size,
                    self.state.config.client_timeout,
                )
                .await?;
                merge_json_body(&mut params, &bytes)?;
                self.register(params).await
            }
            (["models", m], &Method::GET) => self.describe(m, None),
            (["models", m, v], &Method::GET) => self.describe(m, Some(v)),
            (["models", m], &Method::PUT) => self.scale(m, None, &params).await,
            (["models", m, v], &Method::PUT) => self.scale(m, Some(v), &params).await,
            (["models", m], &Method::DELETE) => self.unregister(m, None).await,
            (["models", m, v], &Method::DELETE) => self.unregister(m, Some(v)).await,
            (["models", m, v, "set-default"], &Method::PUT) => self.set_default(m, v),
            (["models", ..], _) => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::not_found()),
        }
    }

    fn list(&self, params: &Params) -> Result<Response<Body>, ApiError> {
        // TorchServe's paging: limit outside 0..=100 means 100; the token is the offset.
        let limit = match int_param(params, "limit")? {
            Some(l) if (0..=100).contains(&l) => l as usize,
            _ => 100,
        };
        let start = int_param(params, "next_page_token")?.unwrap_or(0).max(0) as usize;
        let models = self.state.registry.list();
        let end = (start + limit).min(models.len());
        let page: Vec<serde_json::Value> = models
            .get(start.min(models.len())..end)
            .unwrap_or_default()
            .iter()
            .map(|(name, v)| serde_json::json!({"modelName": name, "modelUrl": v.url}))
            .collect();
        let mut body = serde_json::Map::new();
        if end < models.len() {
            body.insert("nextPageToken".into(), end.to_string().into());
        }
        body.insert("models".into(), page.into());
        Ok(json_response(StatusCode::OK, &body.into()))
    }

    fn describe(&self, name: &str, version: Option<&str>) -> Result<Response<Body>, ApiError> {
        let registry = &self.state.registry;
        let versions: Vec<Arc<ModelVersion>> = match version {
            Some("all") => registry.versions(name)?,
            v => vec![registry.get(name, v)?],
        };
        let body: Vec<serde_json::Value> = versions.iter().map(|v| v.describe()).collect();
        Ok(json_response(StatusCode::OK, &body.into()))
    }

    async fn register(&self, params: Params) -> Result<Response<Body>, ApiError> {
        if !self.state.config.enable_model_api {
            return Err(model_api_disabled());
        }
        let url = params
            .get("url")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ApiError::bad_request("Parameter url is required."))?;
        let overrides = ModelOverrides {
            batch_size: uint_param(&params, "batch_size")?,
            max_batch_delay: uint_param(&params, "max_batch_delay")?
                .map(|ms| Duration::from_millis(ms as u64)),
            response_timeout: uint_param(&params, "response_timeout")?
                .map(|s| Duration::from_secs(s as u64)),
            initial_workers: uint_param(&params, "initial_workers")?,
        };
        let synchronous = bool_param(&params, "synchronous", true)?;
        let name = params.get("model_name").filter(|n| !n.is_empty()).cloned();
        if let Some(name) = &name {
            crate::archive::validate_model_name(name).map_err(ApiError::bad_request)?;
        }
        // Parameters are checked before anything is downloaded.
        let downloaded = url.starts_with("http://") || url.starts_with("https://");
        let path = if downloaded {
            self.download(url).await?
        } else {
            self.archive_path(url)?
        };
        let request = LoadRequest {
            name,
            url: url.clone(),
            path: path.clone(),
            overrides,
            at_startup: false,
        };
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || {
            state.registry.register(
                &request,
                &state.config,
                &state.runtime,
                &state.work_dir,
                synchronous,
            )
        })
        .await;
        let failed = !matches!(result, Ok(Ok(_)));
        if failed && downloaded {
            // A failed registration leaves nothing behind, the downloaded archive included.
            let _ = std::fs::remove_file(&path);
        }
        let version = result.map_err(ApiError::internal)?.map_err(|e| match e {
            RegisterError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "ConflictStatusException", m)
            }
            RegisterError::Load(e) => ApiError::bad_request(e.to_string()),
            RegisterError::Scale(e) => scale_error(e),
        })?;
        self.state.snapshot();
        if synchronous {
            return Ok(status(
                StatusCode::OK,
                format!(
                    "Model \"{}\" Version: {} registered with {} initial workers",
                    version.name,
                    version.version,
                    version.workers()
                ),
            ));
        }
        let (min, max) = version.workers_range();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || match version.scale(min, max) {
            Ok(()) => state.snapshot(),
            Err(e) => tracing::error!(
                "starting workers of {} {}: {e}",
                version.name,
                version.version
            ),
        });
        Ok(status(StatusCode::ACCEPTED, "Processing worker updates..."))
    }

    /// Downloads an `http(s)://` archive into the model store.
    async fn download(&self, url: &str) -> Result<PathBuf, ApiError> {
        let store = self.state.config.model_store.clone().ok_or_else(|| {
            ApiError::bad_request("The server has no model store (--model-store) to download into")
        })?;
        let (url, state) = (url.to_string(), self.state.clone());
        tokio::task::spawn_blocking(move || crate::download::download(&url, &store, &state.config))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                crate::download::DownloadError::Exists(_) => ApiError::new(
                    StatusCode::CONFLICT,
                    "FileAlreadyExistsException",
                    e.to_string(),
                ),
                crate::download::DownloadError::NotAllowed(_)
                | crate::download::DownloadError::BadName(_) => {
                    ApiError::bad_request(e.to_string())
                }
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "DownloadArchiveException",
                    e.to_string(),
                ),
            })
    }

    /// Where `url` points: a file in the model store (no folders, no `..`) or a
    /// `file://` path allowed by `allowed_urls`.
    fn archive_path(&self, url: &str) -> Result<PathBuf, ApiError> {
        let path = if let Some(p) = url.strip_prefix("file://") {
            if !self.state.config.url_allowed(url) {
                return Err(ApiError::bad_request(format!(
                    "URL {url} is not allowed: add a matching pattern to allowed_urls"
                )));
            }
            PathBuf::from(p)
        } else {
            if url.contains('/') || url.contains('\\') || url == ".." || url.starts_with('.') {
                return Err(ApiError::bad_request(format!(
                    "Invalid model url {url:?}: name a file in the model store, without folders"
                )));
            }
            let store = self.state.config.model_store.as_ref().ok_or_else(|| {
                ApiError::bad_request(
                    "The server has no model store (--model-store) to register from",
                )
            })?;
            store.join(url)
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ModelNotFoundException",
                format!("Model not found in model store: {url}"),
            )
        })?;
        if meta.file_type().is_symlink() {
            return Err(ApiError::bad_request(format!(
                "Invalid model url {url:?}: links are not followed"
            )));
        }
        Ok(path)
    }

    async fn scale(
        &self,
        name: &str,
        version: Option<&str>,
        params: &Params,
    ) -> Result<Response<Body>, ApiError> {
        let target = self.state.registry.get(name, version)?;
        let min = uint_param(params, "min_worker")?.unwrap_or(1);
        let max = uint_param(params, "max_worker")?.unwrap_or(min);
        if max < min {
            return Err(ApiError::bad_request(
                "max_worker cannot be less than min_worker.",
            ));
        }
        let synchronous = bool_param(params, "synchronous", false)?;
        // What the server cannot run is refused now, before anything changes, even when
        // the scaling itself runs after the answer: the slots are held for it.
        target.reserve_workers(min).map_err(scale_error)?;
        let job = {
            let (target, state) = (target.clone(), self.state.clone());
            tokio::task::spawn_blocking(move || {
                let result = target.scale(min, max);
                // A snapshot records a state that was reached, never a refused one.
                if result.is_ok() {
                    state.snapshot();
                }
                result
            })
        };
        if !synchronous {
            tokio::spawn(async move {
                if let Ok(Err(e)) = job.await {
                    tracing::error!("scaling workers: {e}");
                }
            });
            return Ok(status(StatusCode::ACCEPTED, "Processing worker updates..."));
        }
        job.await
            .map_err(ApiError::internal)?
            .map_err(scale_error)?;
        let text = match version {
            Some(v) => format!("Workers scaled to {min} for model: {name}, version: {v}"),
            None => format!("Workers scaled to {min} for model: {name}"),
        };
        Ok(status(StatusCode::OK, text))
    }

    async fn unregister(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        if !self.state.config.enable_model_api {
            return Err(model_api_disabled());
        }
        let removed = self
            .state
            .registry
            .remove(name, version)
            .map_err(|e| match e {
                RemoveError::Lookup(e) => e.into(),
                e @ RemoveError::DefaultVersion(_) => ApiError::bad_request(e.to_string()),
            })?;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            state.snapshot();
            removed.drain()
        })
        .await
        .map_err(ApiError::internal)?;
        Ok(status(
            StatusCode::OK,
            format!("Model \"{name}\" unregistered"),
        ))
    }

    fn set_default(&self, name: &str, version: &str) -> Result<Response<Body>, ApiError> {
        self.state.registry.set_default(name, version)?;
        self.state.snapshot();
        Ok(status(
            StatusCode::OK,
            format!("Default version successfully updated for model \"{name}\" to \"{version}\""),
        ))
    }
}

/// A scaling that does not fit is the client's to change (400, with the numbers); a
/// worker that failed to start is the server's (500).
fn scale_error(e: crate::registry::ScaleError) -> ApiError {
    match e {
        e @ crate::registry::ScaleError::Full { .. } => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

fn model_api_disabled() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        "Model API disabled: start the server with --enable-model-api (or enable_model_api=true) to register and unregister models",
    )
}

/// Merges the keys of a JSON object body into the query parameters (query wins).
fn merge_json_body(params: &mut Params, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad_request("The JSON body must be an object"))?;
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        params.entry(k.clone()).or_insert(text);
    }
    Ok(())
}
