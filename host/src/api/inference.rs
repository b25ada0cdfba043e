//! The inference API (default `127.0.0.1:8080`), TorchServe's routes:
//!
//! - `GET /ping` → `{"status": "Healthy"}` (500 `Unhealthy` when a model has no worker);
//! - `POST /predictions/{model}[/{version}]` → the handler's response;
//! - `OPTIONS /` → the OpenAPI 3 description of this API.
//!
//! Every response carries an `x-request-id`: the client's, or a new one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client_body::ClientBody;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use super::{ApiError, Body, body, json_response};
use crate::registry::Registry;
use crate::runtime;
use crate::worker::{Job, PredictError, SubmitError};

/// What the inference API needs.
pub struct InferenceApi {
    pub registry: Arc<Registry>,
    /// `max_request_size`.
    pub max_request_size: usize,
    /// `max_response_size`: a handler's larger answer becomes a 500.
    pub max_response_size: usize,
    /// `client_timeout`: how long the body may take to arrive.
    pub client_timeout: Duration,
}

impl InferenceApi {
    /// Answers one request (`request_id`: its `x-request-id`).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<ClientBody>,
        request_id: String,
    ) -> Response<Body> {
        match self.route(req, &request_id).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn route(
        &self,
        req: Request<ClientBody>,
        request_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (segments.as_slice(), req.method()) {
            ([], &Method::OPTIONS) => {
                Ok(json_response(StatusCode::OK, &super::openapi::inference()))
            }
            (["ping"], &Method::GET) => Ok(self.ping()),
            (["ping"], _) => Err(ApiError::method_not_allowed()),
            (["predictions", model], &Method::POST | &Method::PUT) => {
                self.predict(req, model, None, request_id).await
            }
            (["predictions", model, version], &Method::POST | &Method::PUT) => {
                self.predict(req, model, Some(version), request_id).await
            }
            (["predictions", ..], _) => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::not_found()),
        }
    }

    fn ping(&self) -> Response<Body> {
        if self.registry.healthy() {
            json_response(StatusCode::OK, &serde_json::json!({"status": "Healthy"}))
        } else {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"status": "Unhealthy"}),
            )
        }
    }

    async fn predict(
        &self,
        req: Request<ClientBody>,
        model: &str,
        version: Option<&str>,
        request_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let target = self.registry.get(model, version)?;
        let started = Instant::now();
        let result = self.predict_on(&target, req, request_id).await;
        crate::metrics::global().inference(&target.name, &target.version, started.elapsed());
        result
    }

    async fn predict_on(
        &self,
        target: &crate::registry::ModelVersion,
        req: Request<ClientBody>,
        request_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = body::read_limited(body, self.max_request_size, self.client_timeout).await?;
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let request = runtime::Request {
            id: request_id.to_string(),
            headers,
            parts: body::parts(&parts.headers, bytes).await?,
        };
        let (tx, rx) = oneshot::channel();
        let job = Job {
            request,
            enqueued: Instant::now(),
            reply: tx,
        };
        match target.submit(job) {
            Ok(()) => {}
            // Unregistered while the request arrived: as if it had not been there.
            Err(SubmitError::Closed(_)) => {
                return Err(crate::registry::LookupError::VersionNotFound {
                    model: target.name.clone(),
                    version: target.version.clone(),
                }
                .into());
            }
            Err(SubmitError::NoWorker(_)) => {
                return Err(ApiError::unavailable(target.no_worker_message()));
            }
            Err(SubmitError::Full(_)) => {
                return Err(ApiError::unavailable(format!(
                    "{} Its job queue is full (jobQueueSize {}).",
                    target.no_worker_message(),
                    target.settings.job_queue_size
                )));
            }
        }
        // The lane bounds each handler call by the same timeout and answers first; the
        // grace second lets its message arrive.
        let timeout = target.settings.response_timeout;
        let result = match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => return Err(ApiError::unavailable("the worker stopped before answering")),
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "the request timed out after {} s (responseTimeout)",
                    timeout.as_secs()
                )));
            }
        };
        match result {
            Ok(resp) if resp.body.len() > self.max_response_size => {
                Err(ApiError::internal(format!(
                    "the handler's response of {} bytes exceeds max_response_size ({} bytes)",
                    resp.body.len(),
                    self.max_response_size
                )))
            }
            Ok(resp) if headers_size(&resp) > MAX_HANDLER_HEADERS => {
                Err(ApiError::internal(format!(
                    "the handler's response headers take {} bytes, over the {MAX_HANDLER_HEADERS} \
                     allowed beside max_response_size (which counts the body)",
                    headers_size(&resp)
                )))
            }
            Ok(resp) => handler_response(resp),
            Err(e) => Err(prediction_error(e)),
        }
    }
}

/// TorchServe answers every failure on the prediction path with the job's status and
/// the type `InternalServerException`.
fn prediction_error(e: PredictError) -> ApiError {
    let status = match &e {
        PredictError::Handler { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        PredictError::Crash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        PredictError::Model(_) => StatusCode::SERVICE_UNAVAILABLE,
        PredictError::Input(_) => StatusCode::BAD_REQUEST,
        PredictError::Unavailable(m) => return ApiError::unavailable(m),
    };
    ApiError::new(status, "InternalServerException", e.to_string())
}

/// The most header bytes a handler's answer may carry (`max_response_size` bounds its
/// body).
const MAX_HANDLER_HEADERS: usize = 64 * 1024;

/// The size of a handler answer's headers as they go on the wire.
fn headers_size(resp: &runtime::Response) -> usize {
    resp.headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum()
}

/// Headers a handler may not set: the server frames the response itself (a handler's
/// `content-length` could otherwise smuggle a second response onto the connection).
fn is_framing_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
    ) || name.as_str().starts_with("proxy-")
}

/// The HTTP response of a handler's answer. Its status must be a final one (200–599);
/// framing headers are dropped.
fn handler_response(resp: runtime::Response) -> Result<Response<Body>, ApiError> {
    if !(200..=599).contains(&resp.status) {
        return Err(ApiError::internal(format!(
            "the handler answered with status {}, which is not a final HTTP status (200-599)",
            resp.status
        )));
    }
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    let mut has_type = false;
    for (k, v) in &resp.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) else {
            continue;
        };
        if is_framing_header(&name) {
            tracing::debug!("dropping the handler's framing header {name}");
            continue;
        }
        has_type |= name == CONTENT_TYPE;
        builder = builder.header(name, value);
    }
    if !has_type {
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(&resp.body).is_ok();
        builder = builder.header(
            CONTENT_TYPE,
            if json {
                "application/json"
            } else {
                "application/octet-stream"
            },
        );
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .map_err(ApiError::internal)
}
