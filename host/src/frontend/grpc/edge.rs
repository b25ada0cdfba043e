//! What every gRPC call goes through before its service sees it, and the connections
//! it comes on.
//!
//! - [`incoming`]: the accepted TCP connections (TLS handshakes each in its own task,
//!   bounded by `client_timeout`), each tagged with its peer for the log.
//! - [`EdgeLayer`]: the token check (TorchServe's `PERMISSION_DENIED`, for every call
//!   but KServe's `ServerLive` and `ServerReady`, open as the v2 health routes are
//!   over REST), an `x-request-id` for calls without one, and one access-log line per
//!   call with its `grpc-status`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::http::X_REQUEST_ID;
use crate::http::auth::{KeyKind, TokenAuth};

/// Calls that need no key: KServe's health, as over REST (probes carry no key).
/// TorchServe's gRPC `Ping` needs one, as in TorchServe.
const OPEN: &[&str] = &[
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
];

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One accepted connection, plain or TLS.
pub struct Conn {
    io: Box<dyn Io>,
    peer: SocketAddr,
}

/// The peer of a call's connection (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        Peer(self.peer)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connections `listener` accepts until `shutdown`, as tonic takes them.
pub fn incoming(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = std::io::Result<Conn>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Conn>(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("gRPC accept failed: {e}");
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            match tls.clone() {
                None => {
                    let conn = Conn {
                        io: Box::new(stream),
                        peer,
                    };
                    if tx.send(conn).await.is_err() {
                        break;
                    }
                }
                Some(acceptor) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Some(conn) =
                            handshake(acceptor, stream, peer, handshake_timeout).await
                        {
                            let _ = tx.send(conn).await;
                        }
                    });
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let conn = rx.recv().await?;
        Some((Ok(conn), rx))
    })
}

async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<Conn> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Conn {
            io: Box::new(tls),
            peer,
        }),
        Ok(Err(e)) => {
            tracing::debug!("gRPC TLS handshake with {peer} failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("gRPC TLS handshake with {peer} timed out");
            None
        }
    }
}

/// The layer of [`Edge`] over a port's services.
#[derive(Clone)]
pub struct EdgeLayer {
    api: &'static str,
    auth: Option<(Arc<TokenAuth>, KeyKind)>,
}

impl EdgeLayer {
    /// For the port named `api` in the log, checking `kind` keys when `auth` is set.
    pub fn new(api: &'static str, auth: Option<Arc<TokenAuth>>, kind: KeyKind) -> EdgeLayer {
        EdgeLayer {
            api,
            auth: auth.map(|a| (a, kind)),
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module's documentation.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Edge<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = req.uri().path().to_string();
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        let metadata = tonic::metadata::MetadataMap::from_headers(req.headers().clone());
        let id = super::request_id(&metadata);
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            req.headers_mut().insert(X_REQUEST_ID, v);
        }
        let api = self.layer.api;
        let denied = match &self.layer.auth {
            Some((auth, kind)) if !OPEN.contains(&path.as_str()) => auth.check(*kind, &req).err(),
            _ => None,
        };
        if denied.is_some() {
            let status = tonic::Status::permission_denied(
                "Token Authorization failed. Token either incorrect, expired, or not provided correctly: send the key from key_file.json as `authorization: Bearer KEY` metadata (the inference key on the inference port, the management key on the management port)",
            );
            log(peer, &path, status.code() as i32, started, &id, api);
            let resp = status.into_http::<R>();
            return Box::pin(std::future::ready(Ok(resp)));
        }
        // The clone is ready only after poll_ready; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut resp = inner.call(req).await?;
            rewrite_decoding(&mut resp);
            // An error is in the headers (a trailers-only answer); success comes in
            // the trailers, after the log line.
            let code = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            log(peer, &path, code, started, &id, api);
            Ok(resp)
        })
    }
}

/// A trailers-only answer of tonic's about a request it could not decode, in the
/// client's terms (`status::decoding`).
fn rewrite_decoding<R>(resp: &mut http::Response<R>) {
    let headers = resp.headers();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let Some(code) = code else { return };
    let status = tonic::Status::from_header_map(headers);
    let message = status
        .as_ref()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    if let Some((code, message)) =
        super::status::classify_decoding(tonic::Code::from(code), &message)
    {
        let fixed = tonic::Status::new(code, message);
        let _ = fixed.add_header(resp.headers_mut());
    }
}

fn log(peer: Option<SocketAddr>, path: &str, code: i32, started: Instant, id: &str, api: &str) {
    let peer = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
    tracing::info!(
        target: crate::logging::ACCESS,
        "{peer} \"POST {path} HTTP/2.0\" grpc-status={code} {}us request_id={id} api={api}",
        started.elapsed().as_micros(),
    );
}
