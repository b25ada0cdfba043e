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
//! - `OPTIONS /` describes this API in OpenAPI 3;
//! - `/workflows…`: TorchServe's workflow management (`super::workflow`).
//!
//! Archives come from the model store (a file name, no folders), a `file://` path, or
//! an `http(s)://` URL downloaded into the store; the URLs must match `allowed_urls`.
//!
//! Each route is an [`Operation`] with its parameters, answered with a status and a
//! JSON body ([`ManagementApi::run`]): TorchServe's gRPC management service
//! (`frontend::grpc`) runs the same operations and sends the same JSON as its `msg`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::error::{self, method_not_allowed, not_found};
use crate::config::ModelOverrides;
use crate::core::status::{LaneHealth, ModelStatus};
use crate::core::{Core, Error, Registered, Registration, Scaled};
use crate::http::auth::TokenAuth;
use crate::http::client_body::ClientBody;
use crate::http::{Body, body, json_response};

/// What the management API needs.
pub struct ManagementApi {
    pub core: Arc<Core>,
    /// The API keys (`None`: token authorization disabled), for `GET /token`.
    pub auth: Option<Arc<TokenAuth>>,
}

/// Query parameters, merged with a JSON body's keys for `POST /models`; TorchServe's
/// names (`min_worker`, `batch_size`, …).
pub type Params = HashMap<String, String>;

/// What the management API does.
pub enum Operation<'a> {
    /// `GET /models` (`limit`, `next_page_token`).
    List,
    /// `GET /models/{name}[/{version}|/all]`.
    Describe {
        name: &'a str,
        version: Option<&'a str>,
    },
    /// `POST /models` (`url`, `model_name`, `batch_size`, …).
    Register,
    /// `PUT /models/{name}[/{version}]` (`min_worker`, `max_worker`, `synchronous`).
    Scale {
        name: &'a str,
        version: Option<&'a str>,
    },
    /// `DELETE /models/{name}[/{version}]`.
    Unregister {
        name: &'a str,
        version: Option<&'a str>,
    },
    /// `PUT /models/{name}/{version}/set-default`.
    SetDefault { name: &'a str, version: &'a str },
}

/// An operation's answer: its HTTP status and its JSON body.
pub type Answer = (StatusCode, serde_json::Value);

fn status(code: StatusCode, text: impl Into<String>) -> Answer {
    (code, json!({ "status": text.into() }))
}

fn invalid(key: &str, v: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid value for parameter {key}: {v}"))
}

pub(super) fn int_param(params: &Params, key: &str) -> Result<Option<i64>, Error> {
    params
        .get(key)
        .map(|v| v.parse::<i64>().map_err(|_| invalid(key, v)))
        .transpose()
}

fn uint_param(params: &Params, key: &str) -> Result<Option<usize>, Error> {
    match int_param(params, key)? {
        Some(n) if n < 0 => Err(invalid(key, n)),
        other => Ok(other.map(|n| n as usize)),
    }
}

fn bool_param(params: &Params, key: &str, default: bool) -> Result<bool, Error> {
    match params.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(invalid(key, v)),
    }
}

/// TorchServe's `describe` of one version. A worker's `status` is `READY`, `ERROR` (no
/// working handler instance; `error` says why) or `UNRESPONSIVE` (its forward has run
/// past `responseTimeout`). A version with `scaleToZero` says so in a `scaleToZero`
/// object of our own: its idle time and whether it is loaded now.
pub fn describe(s: &ModelStatus) -> serde_json::Value {
    let pid = std::process::id();
    let workers: Vec<serde_json::Value> = s
        .workers
        .iter()
        .map(|w| {
            let mut v = json!({
                "id": (9000 + w.id).to_string(),
                "startTime": w.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "status": "READY",
                "memoryUsage": 0,
                "pid": pid,
                "gpu": w.gpu.is_some(),
                "gpuUsage": w.gpu_usage.as_ref().map_or("N/A".to_string(), |u| u.describe()),
            });
            match &w.health {
                LaneHealth::Ready => {}
                LaneHealth::Error(why) => {
                    v["status"] = "ERROR".into();
                    v["error"] = why.clone().into();
                }
                LaneHealth::Unresponsive(busy) => {
                    v["status"] = "UNRESPONSIVE".into();
                    v["error"] = format!(
                        "its forward has run {} s, past responseTimeout",
                        busy.as_secs()
                    )
                    .into();
                }
            }
            v
        })
        .collect();
    let mut described = json!({
        "modelName": s.name,
        "modelVersion": s.version,
        "modelUrl": s.url,
        "runtime": s.runtime,
        "minWorkers": s.min_workers,
        "maxWorkers": s.max_workers,
        "batchSize": s.batch_size,
        "maxBatchDelay": s.max_batch_delay.as_millis() as u64,
        "responseTimeout": s.response_timeout.as_secs(),
        "loadedAtStartup": s.loaded_at_startup,
        "workers": workers,
        "jobQueueStatus": {
            "remainingCapacity": s.queue_capacity,
            "pendingRequests": s.queue_pending,
        },
    });
    // Ours (TorchServe has no such setting): a version that scales to zero.
    if let Some(z) = &s.scale_to_zero {
        described["scaleToZero"] = json!({
            "idleSeconds": z.idle.as_secs(),
            "loaded": z.loaded,
        });
    }
    described
}

impl ManagementApi {
    /// Answers one request.
    pub async fn handle(&self, req: Request<ClientBody>, _request_id: String) -> Response<Body> {
        match self.route(req).await {
            Ok(r) => r,
            Err(Route::Error(e)) => error::response(e),
            Err(Route::NotFound) => not_found(),
            Err(Route::Method) => method_not_allowed(),
        }
    }

    async fn route(&self, req: Request<ClientBody>) -> Result<Response<Body>, Route> {
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
            ([], &Method::OPTIONS) | (["api-description"], &Method::GET) => {
                Ok(json_response(StatusCode::OK, &super::openapi::management()))
            }
            (["api-description"], _) => Err(Route::Method),
            (["models"], &Method::GET) => self.answer(Operation::List, params).await,
            (["token"], &Method::GET) => match &self.auth {
                Some(auth) => {
                    let kind = params.get("type").map(String::as_str).unwrap_or("");
                    Ok(json_response(StatusCode::OK, &auth.refresh(&req, kind)?))
                }
                None => {
                    Err(Error::invalid("token authorization is disabled on this server").into())
                }
            },
            (["token"], _) => Err(Route::Method),
            (["models"], &Method::POST) => {
                let bytes = body::read_limited(
                    req.into_body(),
                    self.core.config.max_request_size,
                    self.core.config.client_timeout,
                )
                .await?;
                merge_json_body(&mut params, &bytes)?;
                self.answer(Operation::Register, params).await
            }
            (["models", name], &Method::GET) => {
                let op = Operation::Describe {
                    name,
                    version: None,
                };
                self.answer(op, params).await
            }
            (["models", name, v], &Method::GET) => {
                let op = Operation::Describe {
                    name,
                    version: Some(v),
                };
                self.answer(op, params).await
            }
            (["models", name], &Method::PUT) => {
                let op = Operation::Scale {
                    name,
                    version: None,
                };
                self.answer(op, params).await
            }
            (["models", name, v], &Method::PUT) => {
                let op = Operation::Scale {
                    name,
                    version: Some(v),
                };
                self.answer(op, params).await
            }
            (["models", name], &Method::DELETE) => {
                let op = Operation::Unregister {
                    name,
                    version: None,
                };
                self.answer(op, params).await
            }
            (["models", name, v], &Method::DELETE) => {
                let op = Operation::Unregister {
                    name,
                    version: Some(v),
                };
                self.answer(op, params).await
            }
            (["models", name, version, "set-default"], &Method::PUT) => {
                let op = Operation::SetDefault { name, version };
                self.answer(op, params).await
            }
            (["models", ..], _) => Err(Route::Method),
            (["workflows", ..], _) if segs.len() <= 2 => {
                Ok(super::workflow::manage(&self.core, req, &segs, params).await?)
            }
            _ => Err(Route::NotFound),
        }
    }

    async fn answer(&self, op: Operation<'_>, params: Params) -> Result<Response<Body>, Route> {
        let (code, body) = self.run(op, params).await?;
        Ok(json_response(code, &body))
    }

    /// Runs `op` with `params`.
    pub async fn run(&self, op: Operation<'_>, params: Params) -> Result<Answer, Error> {
        match op {
            Operation::List => self.list(&params),
            Operation::Describe { name, version } => self.describe(name, version),
            Operation::Register => self.register(params).await,
            Operation::Scale { name, version } => self.scale(name, version, &params).await,
            Operation::Unregister { name, version } => self.unregister(name, version).await,
            Operation::SetDefault { name, version } => self.set_default(name, version),
        }
    }

    fn list(&self, params: &Params) -> Result<Answer, Error> {
        // TorchServe's paging: limit outside 0..=100 means 100; the token is the offset.
        let limit = match int_param(params, "limit")? {
            Some(l) if (0..=100).contains(&l) => l as usize,
            _ => 100,
        };
        let start = int_param(params, "next_page_token")?.unwrap_or(0).max(0) as usize;
        let models = self.core.registry.list();
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
        Ok((StatusCode::OK, body.into()))
    }

    fn describe(&self, name: &str, version: Option<&str>) -> Result<Answer, Error> {
        let versions = match version {
            Some("all") => self.core.versions(name)?,
            v => vec![self.core.model(name, v)?],
        };
        let body: Vec<serde_json::Value> = versions.iter().map(|v| describe(&v.status())).collect();
        Ok((StatusCode::OK, body.into()))
    }

    async fn register(&self, params: Params) -> Result<Answer, Error> {
        // Parameters are checked before anything is downloaded or loaded.
        if !self.core.config.enable_model_api {
            return Err(Error::ModelApiDisabled);
        }
        // No url is the client's mistake (400); an empty one names no archive in the
        // store (404), as TorchServe answers both.
        let url = params
            .get("url")
            .ok_or_else(|| Error::invalid("Parameter url is required."))?;
        if url.is_empty() {
            return Err(Error::ArchiveNotFound(String::new()));
        }
        let overrides = ModelOverrides {
            batch_size: uint_param(&params, "batch_size")?,
            max_batch_delay: uint_param(&params, "max_batch_delay")?
                .map(|ms| Duration::from_millis(ms as u64)),
            response_timeout: uint_param(&params, "response_timeout")?
                .map(|s| Duration::from_secs(s as u64)),
            initial_workers: uint_param(&params, "initial_workers")?,
            max_workers: None,
        };
        // TorchServe's worker start timeout; a wasmserve worker starts in milliseconds.
        uint_param(&params, "startup_timeout")?;
        // The manifest runtimes TorchServe knows; the handler decides how it runs here.
        let known = |r: &str| matches!(r, "" | "python" | "python2" | "python3" | "lsp" | "wasm");
        if let Some(runtime) = params.get("runtime").filter(|r| !known(r)) {
            return Err(invalid("runtime", runtime));
        }
        let registration = Registration {
            url: url.clone(),
            name: params.get("model_name").filter(|n| !n.is_empty()).cloned(),
            overrides,
            handler: params.get("handler").filter(|h| !h.is_empty()).cloned(),
            synchronous: bool_param(&params, "synchronous", true)?,
        };
        match self.core.register(registration).await? {
            Registered::Ready(v) => Ok(status(
                StatusCode::OK,
                format!(
                    "Model \"{}\" Version: {} registered with {} initial workers",
                    v.name,
                    v.version,
                    v.workers()
                ),
            )),
            // TorchServe answers an asynchronous registration 200 too.
            Registered::Starting(v) => Ok(status(
                StatusCode::OK,
                format!(
                    "Model \"{}\" Version: {} registered; its {} initial workers are starting",
                    v.name,
                    v.version,
                    v.workers_range().0
                ),
            )),
        }
    }

    async fn scale(
        &self,
        name: &str,
        version: Option<&str>,
        params: &Params,
    ) -> Result<Answer, Error> {
        // An unknown model is reported before the parameters.
        self.core.model(name, version)?;
        let min = uint_param(params, "min_worker")?.unwrap_or(1);
        let max = uint_param(params, "max_worker")?.unwrap_or(min);
        let synchronous = bool_param(params, "synchronous", false)?;
        match self
            .core
            .scale(name, version, min, max, synchronous)
            .await?
        {
            Scaled::Started => Ok(status(StatusCode::ACCEPTED, "Processing worker updates...")),
            Scaled::Done => {
                let text = match version {
                    Some(v) => format!("Workers scaled to {min} for model: {name}, version: {v}"),
                    None => format!("Workers scaled to {min} for model: {name}"),
                };
                Ok(status(StatusCode::OK, text))
            }
        }
    }

    async fn unregister(&self, name: &str, version: Option<&str>) -> Result<Answer, Error> {
        self.core.unregister(name, version).await?;
        Ok(status(
            StatusCode::OK,
            format!("Model \"{name}\" unregistered"),
        ))
    }

    fn set_default(&self, name: &str, version: &str) -> Result<Answer, Error> {
        self.core.set_default(name, version)?;
        Ok(status(
            StatusCode::OK,
            format!("Default version successfully updated for model \"{name}\" to \"{version}\""),
        ))
    }
}

/// Why a route did not answer: an error of the core's, or a path or method it does
/// not have.
enum Route {
    Error(Error),
    NotFound,
    Method,
}

impl From<Error> for Route {
    fn from(e: Error) -> Route {
        Route::Error(e)
    }
}

/// Merges the keys of a JSON object body into the query parameters (query wins).
pub(super) fn merge_json_body(params: &mut Params, bytes: &[u8]) -> Result<(), Error> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("Invalid JSON body: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::invalid("The JSON body must be an object"))?;
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        params.entry(k.clone()).or_insert(text);
    }
    Ok(())
}
