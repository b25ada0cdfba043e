//! What one HTTP listener serves: one of TorchServe's HTTP APIs (the inference API,
//! with KServe v2 and v1 beside it; the management API; the metrics API), or several
//! that share an address, routed by path as TorchServe routes them. KServe's sample
//! `config.properties` puts inference and management on one port (`8085`), and its
//! TorchServe runtime relies on it.
//!
//! On a shared listener a path goes to the API it names: `/models…`, `/workflows…` and
//! `/token` to management, `/metrics` to metrics, every other path to inference (of
//! the APIs the listener serves; an API it does not serve is never chosen). Each API
//! keeps its own key (an inference key does not open `/models`), access-log name and
//! error format; `OPTIONS /` and `/api-description` describe every API the listener
//! serves.

use std::sync::Arc;

use hyper::{Method, Request, Response, StatusCode};

use super::InferencePort;
use super::torchserve::management::ManagementApi;
use super::torchserve::{error, openapi};
use crate::core::{Core, Error};
use crate::http::auth::{KeyKind, TokenAuth};
use crate::http::client_body::ClientBody;
use crate::http::{ApiOf, Body, Classify, Reject, json_response};

/// One of the HTTP APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpApi {
    Inference,
    Management,
    Metrics,
}

impl HttpApi {
    /// Its name in logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            HttpApi::Inference => "inference",
            HttpApi::Management => "management",
            HttpApi::Metrics => "metrics",
        }
    }

    /// The key it requires when token authorization is on (the metrics API is open, as
    /// TorchServe's is).
    fn key(self) -> Option<KeyKind> {
        match self {
            HttpApi::Inference => Some(KeyKind::Inference),
            HttpApi::Management => Some(KeyKind::Management),
            HttpApi::Metrics => None,
        }
    }

    /// The API a path names when several share a listener.
    fn named_by(path: &str) -> Option<HttpApi> {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "models" | "workflows" | "token" => Some(HttpApi::Management),
            "metrics" => Some(HttpApi::Metrics),
            _ => None,
        }
    }
}

/// `apis` without repeats, inference first: where a path that names no API goes.
fn ordered(apis: &[HttpApi]) -> Vec<HttpApi> {
    let mut apis = apis.to_vec();
    apis.sort_by_key(|a| *a != HttpApi::Inference);
    apis.dedup();
    apis
}

/// One listener's APIs.
pub struct Port {
    /// What it serves, the first being where a path that names none goes.
    apis: Vec<HttpApi>,
    inference: Option<InferencePort>,
    management: Option<ManagementApi>,
}

impl Port {
    /// A listener serving `apis` (at least one; inference first when it is among them).
    pub fn new(apis: &[HttpApi], core: &Arc<Core>, auth: Option<Arc<TokenAuth>>) -> Port {
        let apis = ordered(apis);
        Port {
            inference: apis
                .contains(&HttpApi::Inference)
                .then(|| InferencePort::new(core.clone())),
            management: apis.contains(&HttpApi::Management).then(|| ManagementApi {
                core: core.clone(),
                auth,
            }),
            apis,
        }
    }

    /// The APIs it serves.
    pub fn apis(&self) -> &[HttpApi] {
        &self.apis
    }

    /// Which of its APIs a request for `path` is for.
    pub fn api_of(&self, path: &str) -> HttpApi {
        match HttpApi::named_by(path) {
            Some(api) if self.apis.contains(&api) => api,
            _ => self.apis[0],
        }
    }

    /// Whether `req` asks for the description of the listener's APIs, and the listener
    /// serves more than one with a description of its own.
    fn describes_both(&self, req: &Request<ClientBody>) -> bool {
        let path = req.uri().path().trim_end_matches('/');
        self.inference.is_some()
            && self.management.is_some()
            && ((path.is_empty() && req.method() == Method::OPTIONS)
                || (path == "/api-description" && req.method() == Method::GET))
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<ClientBody>, request_id: String) -> Response<Body> {
        if self.describes_both(&req) {
            return json_response(StatusCode::OK, &openapi::both());
        }
        match (
            self.api_of(req.uri().path()),
            &self.inference,
            &self.management,
        ) {
            (HttpApi::Inference, Some(api), _) => api.handle(req, request_id).await,
            (HttpApi::Management, _, Some(api)) => api.handle(req, request_id).await,
            (HttpApi::Metrics, _, _) => super::metrics::handle(req).await,
            // `api_of` chooses only APIs the listener serves.
            _ => error::not_found(),
        }
    }

    /// What the shared steps need to know of a path's API: its name and key.
    pub fn classify(self: &Arc<Self>) -> Classify {
        let port = self.clone();
        Arc::new(move |path: &str| {
            let api = port.api_of(path);
            ApiOf {
                name: api.name(),
                key: api.key(),
            }
        })
    }

    /// Renders what the shared steps refused, in the format of the path's API.
    pub fn reject(self: &Arc<Self>) -> Reject {
        let port = self.clone();
        let inference = InferencePort::reject();
        Arc::new(move |path: &str, e: Error| match port.api_of(path) {
            HttpApi::Inference => inference(path, e),
            HttpApi::Management | HttpApi::Metrics => error::response(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(apis: &[HttpApi]) -> Vec<HttpApi> {
        // The routing alone: a port without its frontends.
        let port = Port {
            apis: ordered(apis),
            inference: None,
            management: None,
        };
        [
            "/predictions/m",
            "/models",
            "/models/m/1.0",
            "/workflows/w",
            "/token",
            "/metrics",
            "/v2/models/m/infer",
            "/v1/models/m:predict",
            "/ping",
            "/",
        ]
        .iter()
        .map(|p| port.api_of(p))
        .collect()
    }

    #[test]
    fn a_shared_port_routes_by_path_as_torchserve_does() {
        use HttpApi::*;
        assert_eq!(
            routes(&[Management, Inference, Metrics]),
            [
                Inference, Management, Management, Management, Management, Metrics, Inference,
                Inference, Inference, Inference
            ]
        );
        // KServe v1/v2 `/v?/models` paths stay with inference; without a metrics API
        // here, `/metrics` is inference's (its 404).
        assert_eq!(
            routes(&[Inference, Management]),
            [
                Inference, Management, Management, Management, Management, Inference, Inference,
                Inference, Inference, Inference
            ]
        );
        // A port of one API sends everything there.
        assert!(routes(&[Management]).iter().all(|a| *a == Management));
        assert!(routes(&[Metrics]).iter().all(|a| *a == Metrics));
    }
}
