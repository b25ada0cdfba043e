//! The metrics API (default `127.0.0.1:8082`): `GET /metrics` in the Prometheus text
//! format, optionally only the families named by `?name[]=a&name[]=b` (TorchServe's
//! filter). What the metrics mean: [`crate::metrics`].

use bytes::Bytes;
use hyper::{Method, Request, Response, StatusCode};

use super::torchserve::error::{method_not_allowed, not_found};
use crate::http::client_body::ClientBody;
use crate::http::{Body, bytes_response};

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
            bytes_response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(text),
            )
        }
        ("/metrics", _) => method_not_allowed(),
        _ => not_found(),
    }
}
