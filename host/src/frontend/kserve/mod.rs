//! KServe's protocols on the inference port, over the core: the Open Inference
//! Protocol (v2, [`v2`], its tensors in [`codec`]) and KServe v1 ([`v1`]). Errors are
//! `{"error": "..."}` with KServe's and Triton's status codes: invalid input 400, not
//! found 404, not ready 503, unsupported 501, else 500.

pub mod codec;
pub mod infer;
pub mod v1;
pub mod v2;

use std::sync::Arc;

use hyper::{Request, Response, StatusCode};

use crate::core::{Core, Error};
use crate::http::client_body::ClientBody;
use crate::http::{Body, json_response};

/// The KServe frontend.
pub struct KServe {
    core: Arc<Core>,
}

impl KServe {
    pub fn new(core: Arc<Core>) -> KServe {
        KServe { core }
    }

    /// Answers a request under `/v2`.
    pub async fn v2(&self, req: Request<ClientBody>, request_id: String) -> Response<Body> {
        v2::handle(&self.core, req, &request_id)
            .await
            .unwrap_or_else(error_response)
    }

    /// Answers a request under `/v1`.
    pub async fn v1(&self, req: Request<ClientBody>, request_id: String) -> Response<Body> {
        v1::handle(&self.core, req, &request_id)
            .await
            .unwrap_or_else(error_response)
    }
}

/// `e` as KServe answers it.
pub fn error_response(e: Error) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &serde_json::json!({ "error": e.to_string() }))
}

/// A route that does not exist, in KServe's format.
pub(crate) fn no_route(path: &str) -> Error {
    Error::NotFound(format!("no such endpoint: {path}"))
}

/// A known route with the wrong method.
pub(crate) fn wrong_method(method: &hyper::Method, path: &str) -> Error {
    Error::MethodNotAllowed(format!("{method} is not allowed on {path}"))
}

/// `{"ready": …}` (and the fields of `extra`), 200 when ready, else 503: KServe's
/// health and readiness answers.
pub(crate) fn readiness(ready: bool, extra: serde_json::Value) -> Response<Body> {
    let mut body = extra;
    body["ready"] = ready.into();
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_response(status, &body)
}

/// A 200 with `value`.
pub(crate) fn json_ok(value: serde_json::Value) -> Result<Response<Body>, Error> {
    Ok(json_response(StatusCode::OK, &value))
}
