//! The HTTP plumbing every frontend shares: the listener loop (HTTP or HTTPS, client
//! timeouts, graceful stop), what every request goes through before a frontend sees it
//! (request id, token authorization, access log, status metrics, draining what it left
//! unread), and reading bodies within the limits. The frontends (`crate::frontend`)
//! answer; an error found here is handed to the listener's frontend to render in its
//! own format.

pub mod auth;
pub mod body;
pub mod client_body;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument as _;

use self::auth::{KeyKind, TokenAuth};
use self::client_body::{ClientBody, Unread};
use crate::core::Error;

/// The most of a body that an API left unread is read (and dropped) to keep its
/// connection usable; past it the connection is closed.
const DRAIN_LIMIT: usize = 8 << 20;

/// The header carrying a request's id, the client's or a new one.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every response body the APIs send: whole (with a `content-length`) or streamed
/// (chunked).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    use http_body_util::BodyExt as _;
    Full::new(bytes.into()).boxed_unsync()
}

/// A body sent as the chunks `stream` yields, in order, as they come.
pub fn streamed(stream: impl futures_util::Stream<Item = Bytes> + Send + 'static) -> Body {
    use futures_util::StreamExt as _;
    use http_body_util::BodyExt as _;
    http_body_util::StreamBody::new(stream.map(|b| Ok(hyper::body::Frame::data(b)))).boxed_unsync()
}

/// A pretty-printed JSON response, as TorchServe sends them.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    bytes_response(status, "application/json", Bytes::from(text))
}

/// A response of `body` with its content type.
pub fn bytes_response(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::from_static(b"{}"))))
}

/// A request's headers as a handler sees them (names in lower case), without those
/// named in `skip` (the framing of a body the handler does not get as it came).
pub fn handler_headers(headers: &hyper::HeaderMap, skip: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// How a listener's frontend renders an error the shared steps found (a missing key):
/// the request's path picks the API where several share a port.
pub type Reject = Arc<dyn Fn(&str, Error) -> Response<Body> + Send + Sync>;

/// What the shared steps need to know of the API a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiOf {
    /// The API's name in the access log (`inference`, `management`, `metrics`).
    pub name: &'static str,
    /// The key it requires (`None`: open, like the metrics API). Answers of an API
    /// with a key count in `Requests2XX/4XX/5XX`, as TorchServe counts the inference
    /// and management APIs.
    pub key: Option<KeyKind>,
}

/// The API a request's path is for, on a listener that may serve several.
pub type Classify = Arc<dyn Fn(&str) -> ApiOf + Send + Sync>;

/// How one listener serves, besides its APIs.
#[derive(Clone)]
pub struct ListenerOptions {
    /// HTTPS when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// How long a client may take to send its headers (and, read by the APIs, its
    /// body), and to finish a TLS handshake.
    pub client_timeout: Duration,
    /// The API keys (`None`: `--disable-token-auth`, every API open).
    pub auth: Option<Arc<TokenAuth>>,
    /// Which API a path is for: its name and the key it needs.
    pub classify: Classify,
    /// Renders what the shared steps refuse, in the format of the path's API.
    pub reject: Reject,
}

/// A request's id: the client's `x-request-id` when it is usable, else a new UUID.
fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// One request through the common steps, then `handle`.
async fn answer<H, F>(
    handle: &H,
    opts: &ListenerOptions,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body>
where
    H: Fn(Request<ClientBody>, String) -> F,
    F: Future<Output = Response<Body>>,
{
    let started = Instant::now();
    let id = request_id(&req);
    let line = format!("{} {} {:?}", req.method(), req.uri(), req.version());
    let span = tracing::info_span!("request", request_id = %id);
    let unread = Unread::default();
    let req = req.map(|body| ClientBody::new(body, &unread));
    let api = (opts.classify)(req.uri().path());
    let denied = opts
        .auth
        .as_ref()
        .zip(api.key)
        .and_then(|(auth, kind)| auth.check(kind, &req).err());
    let mut resp = match denied {
        Some(e) => {
            let path = req.uri().path().to_string();
            drop(req);
            (opts.reject)(&path, e)
        }
        None => handle(req, id.clone()).instrument(span).await,
    };
    if let Some(rest) = unread.take() {
        // A client that was too slow (408) or sent too much (413) is not waited for a
        // second time: its connection is closed.
        let give_up = matches!(
            resp.status(),
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
        );
        if give_up || !drain(rest, opts.client_timeout).await {
            resp.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    if api.key.is_some() {
        crate::metrics::global().api_answer(status);
    }
    tracing::info!(
        target: crate::logging::ACCESS,
        "{peer} \"{line}\" {status} {}us request_id={id} api={}",
        started.elapsed().as_micros(),
        api.name,
    );
    resp
}

/// Reads and drops the rest of a body an API did not read, so that the connection can
/// carry the client's next request. False when that is not worth it or did not work:
/// more than [`DRAIN_LIMIT`] declared or sent, a client too slow, a broken body.
async fn drain(rest: Incoming, timeout: Duration) -> bool {
    use http_body_util::BodyExt as _;
    if hyper::body::Body::size_hint(&rest).lower() > DRAIN_LIMIT as u64 {
        return false;
    }
    matches!(
        tokio::time::timeout(
            timeout,
            http_body_util::Limited::new(rest, DRAIN_LIMIT).collect()
        )
        .await,
        Ok(Ok(_))
    )
}

/// Serves `listener` with `handle` until `shutdown` turns true, then lets in-flight
/// requests finish (for up to 30 s).
pub async fn serve<H, F>(
    listener: TcpListener,
    opts: ListenerOptions,
    handle: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<ClientBody>, String) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handle = Arc::new(handle);
    let opts = Arc::new(opts);
    let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
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
                let (handle, opts2, graceful) = (handle.clone(), opts.clone(), graceful.clone());
                let service = hyper::service::service_fn(move |req| {
                    let (handle, opts) = (handle.clone(), opts2.clone());
                    async move { Ok::<_, Infallible>(answer(&*handle, &opts, req, peer).await) }
                });
                let builder = {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(TokioTimer::new()).header_read_timeout(opts.client_timeout);
                    b
                };
                match opts.tls.clone() {
                    None => {
                        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!("connection from {peer}: {e}");
                            }
                        });
                    }
                    Some(acceptor) => {
                        let timeout = opts.client_timeout;
                        tokio::spawn(async move {
                            let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(e)) => {
                                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake with {peer} timed out");
                                    return;
                                }
                            };
                            let conn = graceful.watch(builder.serve_connection(TokioIo::new(tls), service));
                            drop(graceful);
                            if let Err(e) = conn.await {
                                tracing::debug!("connection from {peer}: {e}");
                            }
                        });
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // TLS handshakes in progress hold a reference until their connection is watched.
    let waiting_since = Instant::now();
    let mut graceful = graceful;
    let graceful = loop {
        match Arc::try_unwrap(graceful) {
            Ok(g) => break g,
            Err(g) if waiting_since.elapsed() < opts.client_timeout => {
                graceful = g;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => break hyper_util::server::graceful::GracefulShutdown::new(),
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after 30 s; closing them");
    }
}
