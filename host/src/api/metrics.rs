//! The metrics API (default `127.0.0.1:8082`): `GET /metrics` in the Prometheus text
//! format, optionally only the families named by `?name[]=a&name[]=b` (TorchServe's
//! filter). What the metrics mean: [`crate::metrics`].

use super::client_body::ClientBody;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};

use super::{ApiError, Body};

/// Answers one request to the metrics API.
pub async fn handle(req: Request<ClientBody>) -> Response<Body> {
    match (req.uri().path().trim_end_matches('/'), req.method()) {
        ("/metrics", &Method::GET) => {
            let names: Vec<String> = req
                .uri()
                .query()
                .map(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .filter(|(k, _)| k == "name[]" || k == "name")
                        .map(|(_, v)| v.into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let text = crate::metrics::global().encode(&names);
            Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(text)))
                .unwrap_or_else(|e| ApiError::internal(e).into_response())
        }
        ("/metrics", _) => ApiError::method_not_allowed().into_response(),
        _ => ApiError::not_found().into_response(),
    }
}
