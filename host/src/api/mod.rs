//! The HTTP side: the listener loop, TorchServe's error body, and the request-body
//! parsing the APIs share. Each API has its own module.

pub mod body;
pub mod inference;
pub mod management;
pub mod openapi;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A client that has not sent its headers after this long is disconnected.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every response body the APIs send.
pub type Body = Full<Bytes>;

/// An error answered with TorchServe's body `{"code", "type", "message"}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// TorchServe's exception name, e.g. `ModelNotFoundException`.
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 404 for a route that does not exist, in TorchServe's words.
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "Requested resource is not found, please refer to API document.",
        )
    }

    /// 405 for a known route with the wrong method, in TorchServe's words.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            "Requested method is not allowed, please refer to API document.",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// 500 for what should not happen (a worker thread that panicked, …).
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            message.to_string(),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            message,
        )
    }

    /// The response carrying this error.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({
            "code": self.status.as_u16(),
            "type": self.kind,
            "message": self.message,
        });
        json_response(self.status, &body)
    }
}

impl From<crate::registry::LookupError> for ApiError {
    fn from(e: crate::registry::LookupError) -> ApiError {
        let kind = match e {
            crate::registry::LookupError::ModelNotFound(_) => "ModelNotFoundException",
            crate::registry::LookupError::VersionNotFound { .. } => "ModelVersionNotFoundException",
        };
        ApiError::new(StatusCode::NOT_FOUND, kind, e.to_string())
    }
}

/// A pretty-printed JSON response, as TorchServe sends them.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid")
}

/// Serves `listener` with `handle` until `shutdown` turns true, then lets in-flight
/// connections finish.
pub async fn serve<H, F>(listener: TcpListener, handle: H, mut shutdown: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handle = Arc::new(handle);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                let service = hyper::service::service_fn(move |req| {
                    let fut = handle(req, peer);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after 30 s; closing them");
    }
}
