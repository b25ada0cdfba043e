//! The protocols wasmserve speaks, each a frontend over the core (`crate::core`): it
//! parses its wire format into core calls and renders the core's answers and errors
//! in its own format. No frontend calls another.
//!
//! - [`torchserve`]: TorchServe's inference and management REST APIs;
//! - [`kserve`]: KServe's Open Inference Protocol (v2) and v1 REST;
//! - [`grpc`]: TorchServe's gRPC services and KServe v2's `GRPCInferenceService`;
//! - [`metrics`]: the Prometheus metrics API.
//!
//! The inference port serves TorchServe's routes, `/v2/...` and `/v1/...` side by
//! side ([`InferencePort`]); [`port`] puts the APIs that share an address on one
//! listener, routed by path.

pub mod grpc;
pub mod kserve;
pub mod metrics;
pub mod port;
pub mod torchserve;

use std::sync::Arc;

use hyper::{Request, Response};

use crate::core::{Core, Error};
use crate::http::client_body::ClientBody;
use crate::http::{Body, Reject};

/// Which API a path on the inference port belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    TorchServe,
    V2,
    V1,
}

fn api_of(path: &str) -> Api {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "v2" => Api::V2,
        "v1" => Api::V1,
        _ => Api::TorchServe,
    }
}

/// The inference port: TorchServe's inference API, KServe v2 and v1, by path.
pub struct InferencePort {
    torchserve: torchserve::inference::InferenceApi,
    kserve: kserve::KServe,
}

impl InferencePort {
    pub fn new(core: Arc<Core>) -> InferencePort {
        let (max_request_size, client_timeout) =
            (core.config.max_request_size, core.config.client_timeout);
        InferencePort {
            torchserve: torchserve::inference::InferenceApi {
                core: core.clone(),
                max_request_size,
                client_timeout,
            },
            kserve: kserve::KServe::new(core),
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<ClientBody>, request_id: String) -> Response<Body> {
        match api_of(req.uri().path()) {
            Api::TorchServe => self.torchserve.handle(req, request_id).await,
            Api::V2 => self.kserve.v2(req, request_id).await,
            Api::V1 => self.kserve.v1(req, request_id).await,
        }
    }

    /// Renders what the shared steps refused, in the format of the API the path is in.
    pub fn reject() -> Reject {
        Arc::new(|path: &str, e: Error| match api_of(path) {
            Api::TorchServe => torchserve::error::response(e),
            Api::V2 | Api::V1 => kserve::error_response(e),
        })
    }
}
