//! KServe v1 on the inference port:
//!
//! - `GET /v1/models` → `{"models": [...]}`;
//! - `GET /v1/models/{m}` → `{"name", "ready"}` (503 when not ready);
//! - `POST /v1/models/{m}:predict` with `{"instances": [...]}` →
//!   `{"predictions": [...]}`.
//!
//! Each instance is one request to the model's handler, all queued together so that
//! they batch: its JSON is the request's body (`application/json`), which is what
//! TorchServe's KServe envelope hands its handlers, so `{"data": "<base64>"}` reaches
//! an image handler as the image, and `{"data": "text"}` a text handler as the text.
//! Each answer becomes one prediction: its JSON when it is JSON, else its text, else
//! `{"b64": "…"}`.

use std::sync::Arc;

use base64::Engine as _;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use super::{json_ok, no_route, readiness, wrong_method};
use crate::core::{Core, Error};
use crate::http::client_body::ClientBody;
use crate::http::{Body, body, handler_headers};
use crate::sandbox;

/// Answers one request under `/v1`.
pub async fn handle(
    core: &Arc<Core>,
    req: Request<ClientBody>,
    request_id: &str,
) -> Result<Response<Body>, Error> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let method = req.method().clone();
    match (segs.as_slice(), &method) {
        (["models"], &Method::GET) => json_ok(json!({"models": core.model_names()})),
        (["models", m], &Method::GET) if !m.contains(':') => {
            Ok(readiness(core.status(m, None)?.ready(), json!({"name": m})))
        }
        (["models", verb], &Method::POST) => match verb.rsplit_once(':') {
            Some((m, "predict")) => predict(core, req, m, request_id).await,
            Some((_, "explain")) => Err(Error::Unsupported(
                "explanations are not served: wasmserve has no explainer".into(),
            )),
            _ => Err(no_route(&path)),
        },
        (["models"] | ["models", _], _) => Err(wrong_method(&method, &path)),
        _ => Err(no_route(&path)),
    }
}

async fn predict(
    core: &Arc<Core>,
    req: Request<ClientBody>,
    name: &str,
    request_id: &str,
) -> Result<Response<Body>, Error> {
    let target = core.model(name, None)?;
    let (parts, body) = req.into_parts();
    let bytes = body::read_limited(
        body,
        core.config.max_request_size,
        core.config.client_timeout,
    )
    .await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("the body is not JSON: {e}")))?;
    let instances = value
        .get("instances")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid(r#"the body must be {"instances": [...]}"#))?;
    if instances.is_empty() {
        return Err(Error::invalid("instances is empty"));
    }
    let headers = handler_headers(&parts.headers, &["content-length", "content-type"]);
    let requests = instances
        .iter()
        .map(|instance| sandbox::Request {
            id: request_id.to_string(),
            headers: headers.clone(),
            parts: vec![sandbox::Part {
                name: "body".into(),
                content_type: Some("application/json".into()),
                data: serde_json::to_vec(instance).unwrap_or_default(),
            }],
        })
        .collect();
    let predictions: Vec<Value> = core
        .predict_each(&target, request_id, requests)
        .await?
        .into_iter()
        .map(|resp| prediction(resp.body))
        .collect();
    json_ok(json!({ "predictions": predictions }))
}

/// One handler answer as a prediction.
fn prediction(body: Vec<u8>) -> Value {
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        return v;
    }
    match String::from_utf8(body) {
        Ok(text) => Value::String(text),
        Err(e) => json!({"b64": base64::engine::general_purpose::STANDARD.encode(e.as_bytes())}),
    }
}
