//! The inference API (default `127.0.0.1:8080`), TorchServe's routes:
//!
//! - `GET /ping` → `{"status": "Healthy"}` (500 `Unhealthy` when a model has no worker);
//! - `POST /predictions/{model}[/{version}]` → the handler's response; a handler that
//!   sends intermediate responses gets a chunked one, a chunk per piece;
//! - `POST /wfpredict/{workflow}` → the workflow's answer (`super::workflow`);
//! - `OPTIONS /` and `GET /api-description` → the OpenAPI 3 description of this API.
//!
//! Every response carries an `x-request-id`: the client's, or a new one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::error::{self, method_not_allowed, not_found};
use crate::core::{Core, Error, Input, Output, Piece, Streamed};
use crate::http::client_body::ClientBody;
use crate::http::{Body, body, full, handler_headers, json_response, streamed};
use crate::sandbox;

/// What the inference API needs.
pub struct InferenceApi {
    pub core: Arc<Core>,
    /// `max_request_size`.
    pub max_request_size: usize,
    /// `client_timeout`: how long the body may take to arrive.
    pub client_timeout: Duration,
}

impl InferenceApi {
    /// Answers one request (`request_id`: its `x-request-id`).
    pub async fn handle(&self, req: Request<ClientBody>, request_id: String) -> Response<Body> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let result = match (segments.as_slice(), req.method()) {
            ([], &Method::OPTIONS) | (["api-description"], &Method::GET) => {
                Ok(json_response(StatusCode::OK, &super::openapi::inference()))
            }
            (["ping"], &Method::GET) => Ok(self.ping()),
            (["ping"] | ["api-description"], _) => return method_not_allowed(),
            (["predictions", model], &Method::POST | &Method::PUT) => {
                self.predict(req, model, None, &request_id).await
            }
            (["predictions", model, version], &Method::POST | &Method::PUT) => {
                self.predict(req, model, Some(version), &request_id).await
            }
            (["predictions", ..], _) => return method_not_allowed(),
            (["wfpredict", name], &Method::POST | &Method::PUT) => {
                super::workflow::predict(&self.core, req, name, &request_id).await
            }
            (["wfpredict", ..], _) => return method_not_allowed(),
            _ => return not_found(),
        };
        result.unwrap_or_else(error::response)
    }

    fn ping(&self) -> Response<Body> {
        if self.core.healthy() {
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
    ) -> Result<Response<Body>, Error> {
        let target = self.core.model(model, version)?;
        let (parts, body) = req.into_parts();
        let bytes = body::read_limited(body, self.max_request_size, self.client_timeout).await?;
        let request = sandbox::Request {
            id: request_id.to_string(),
            headers: handler_headers(&parts.headers, &[]),
            parts: body::parts(&parts.headers, bytes).await?,
        };
        let mut answer =
            self.core
                .predict_streaming(&target, request_id, Input::Request(request))?;
        let first = match answer.next().await {
            Some(piece) => piece?,
            None => return Err(Error::internal("the model gave no answer")),
        };
        match first {
            Piece::Final(Output::Response(resp)) => handler_response(resp, None),
            Piece::Final(Output::Tensors(_)) => {
                Err(Error::internal("the model answered tensors to a request"))
            }
            // A streaming handler: its first piece's status and headers, then every
            // piece's body as a chunk (TorchServe's chunked `/predictions`).
            Piece::Intermediate(resp) => handler_response(resp, Some(answer)),
        }
    }
}

/// The chunks after the first piece: each piece's body as it comes, the final
/// answer's last. An error after the first piece cannot change the status any more:
/// its TorchServe error body is the last chunk.
fn rest(answer: Streamed) -> impl futures_util::Stream<Item = Bytes> + Send {
    futures_util::stream::unfold(Some(answer), |answer| async move {
        let mut answer = answer?;
        let chunk = match answer.next().await? {
            Ok(Piece::Intermediate(resp)) | Ok(Piece::Final(Output::Response(resp))) => {
                Bytes::from(resp.body)
            }
            Ok(Piece::Final(Output::Tensors(_))) => {
                error_chunk(&Error::internal("the model answered tensors to a request"))
            }
            Err(e) => {
                tracing::warn!("a streamed answer failed after its first piece: {e}");
                error_chunk(&e)
            }
        };
        Some((chunk, Some(answer)))
    })
}

fn error_chunk(e: &Error) -> Bytes {
    let mut text = serde_json::to_string_pretty(&error::body(e)).unwrap_or_default();
    text.push('\n');
    Bytes::from(text)
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

/// The HTTP response of a handler's answer (with `more`, the first piece of a streamed
/// one, the rest to follow as chunks). Its status must be a final one (200–599);
/// framing headers are dropped.
fn handler_response(
    resp: sandbox::Response,
    more: Option<Streamed>,
) -> Result<Response<Body>, Error> {
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
    let body = match more {
        None => full(resp.body),
        Some(answer) => {
            let first = futures_util::stream::once(std::future::ready(Bytes::from(resp.body)));
            streamed(futures_util::StreamExt::chain(first, rest(answer)))
        }
    };
    builder.body(body).map_err(Error::internal)
}
