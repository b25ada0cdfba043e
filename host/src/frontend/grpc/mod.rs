//! gRPC over HTTP/2 (tonic), on TorchServe's two gRPC ports, over the same core as
//! the REST APIs:
//!
//! - the inference port (`grpc_inference_address`, default `127.0.0.1:7070`) serves
//!   TorchServe's `org.pytorch.serve.grpc.inference.InferenceAPIsService`
//!   ([`torchserve`]) and KServe v2's `inference.GRPCInferenceService` ([`kserve`]);
//! - the management port (`grpc_management_address`, `127.0.0.1:7071`) serves
//!   TorchServe's `org.pytorch.serve.grpc.management.ManagementAPIsService`
//!   ([`management`]).
//!
//! The services are generated from `proto/` ([`proto`]). What every call goes through
//! first is in [`edge`]: the token keys (`authorization: Bearer KEY` metadata, else
//! `PERMISSION_DENIED`), the request id, the access log. Messages are bounded by
//! `max_request_size` and `max_response_size` (`RESOURCE_EXHAUSTED` past them); with
//! `enable_grpc_ssl`, the ports speak TLS with the REST APIs' certificate. The core's
//! errors become gRPC status codes in [`status`].

pub mod edge;
pub mod kserve;
pub mod management;
pub mod proto;
pub mod status;
pub mod torchserve;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::core::Core;
use crate::http::auth::{KeyKind, TokenAuth};
use crate::sandbox;

/// How both gRPC ports serve.
#[derive(Clone)]
pub struct GrpcOptions {
    /// TLS (`enable_grpc_ssl`), with `h2` offered by ALPN.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The keys (`None`: token authorization disabled).
    pub auth: Option<Arc<TokenAuth>>,
    /// How long a TLS handshake may take (`client_timeout`).
    pub client_timeout: std::time::Duration,
}

/// The largest message each side may send: a request within `max_request_size`, a
/// response within `max_response_size` plus room for its framing (names, shapes).
fn limits(core: &Core) -> (usize, usize) {
    (
        core.config.max_request_size,
        core.config.max_response_size + 64 * 1024,
    )
}

/// Serves the inference port until `shutdown` turns true.
pub async fn serve_inference(
    listener: TcpListener,
    core: Arc<Core>,
    opts: GrpcOptions,
    shutdown: watch::Receiver<bool>,
) {
    use proto::kserve::grpc_inference_service_server::GrpcInferenceServiceServer;
    use proto::ts_inference::inference_ap_is_service_server::InferenceApIsServiceServer;
    let (decode, encode) = limits(&core);
    let ts = InferenceApIsServiceServer::new(torchserve::Inference::new(core.clone()))
        .max_decoding_message_size(decode)
        .max_encoding_message_size(encode);
    let ks = GrpcInferenceServiceServer::new(kserve::Inference::new(core))
        .max_decoding_message_size(decode)
        .max_encoding_message_size(encode);
    let edge = edge::EdgeLayer::new("grpc-inference", opts.auth.clone(), KeyKind::Inference);
    let router = tonic::transport::Server::builder()
        .layer(edge)
        .add_service(ts)
        .add_service(ks);
    let incoming = edge::incoming(listener, opts.tls, opts.client_timeout, shutdown.clone());
    if let Err(e) = router
        .serve_with_incoming_shutdown(incoming, stopped(shutdown))
        .await
    {
        tracing::error!("the gRPC inference port failed: {e}");
    }
}

/// Serves the management port until `shutdown` turns true.
pub async fn serve_management(
    listener: TcpListener,
    core: Arc<Core>,
    opts: GrpcOptions,
    shutdown: watch::Receiver<bool>,
) {
    use proto::ts_management::management_ap_is_service_server::ManagementApIsServiceServer;
    let (decode, encode) = limits(&core);
    let api = crate::frontend::torchserve::management::ManagementApi {
        core,
        auth: opts.auth.clone(),
    };
    let mgmt = ManagementApIsServiceServer::new(management::Management::new(api))
        .max_decoding_message_size(decode)
        .max_encoding_message_size(encode);
    let edge = edge::EdgeLayer::new("grpc-management", opts.auth.clone(), KeyKind::Management);
    let router = tonic::transport::Server::builder()
        .layer(edge)
        .add_service(mgmt);
    let incoming = edge::incoming(listener, opts.tls, opts.client_timeout, shutdown.clone());
    if let Err(e) = router
        .serve_with_incoming_shutdown(incoming, stopped(shutdown))
        .await
    {
        tracing::error!("the gRPC management port failed: {e}");
    }
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// The messages a streaming call answers with.
pub type Answers<A> = Pin<Box<dyn Stream<Item = Result<A, Status>> + Send>>;

/// How many answers of a bidirectional stream may wait for its client; past that its
/// requests wait (and, through them, the handler's pieces).
const STREAM_BUFFER: usize = 8;

/// The answers of a bidirectional call whose requests are answered one after the other
/// in their order (as a sequence needs): `answer(request, call_id, tx)` sends one
/// request's answers to `tx` and says whether the client is still there. A request that
/// cannot be decoded ends the stream with its status; a client that goes away drops the
/// answers, which cancels the request in progress.
pub fn in_order<S, Q, A, F, Fut>(mut requests: S, id: String, mut answer: F) -> Answers<A>
where
    S: Stream<Item = Result<Q, Status>> + Send + Unpin + 'static,
    Q: Send + 'static,
    A: Send + 'static,
    F: FnMut(Q, String, mpsc::Sender<Result<A, Status>>) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(r) = requests.next().await {
            match r {
                Ok(r) => {
                    n += 1;
                    if !answer(r, format!("{id}-{n}"), tx.clone()).await {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(status::decoding(e))).await;
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let message = rx.recv().await?;
        Some((message, rx))
    })
    .boxed()
}

/// The request id a call carries (`x-request-id` metadata, as over REST), else a new one.
pub fn request_id(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// What a handler sees of a call's metadata: its text entries as headers (names in
/// lower case), without the key and HTTP/2's own.
pub fn handler_headers(metadata: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    metadata
        .clone()
        .into_headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "authorization" | "content-type" | "te")
                && !k.as_str().starts_with("grpc-")
        })
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// A handler request whose parts are `input`'s entries, sorted by name (TorchServe's
/// gRPC `input` map: `{"data": <bytes>}` is what an HTTP body would be).
pub fn map_request(
    id: &str,
    headers: Vec<(String, String)>,
    input: std::collections::HashMap<String, Vec<u8>>,
) -> sandbox::Request {
    let mut parts: Vec<sandbox::Part> = input
        .into_iter()
        .map(|(name, data)| sandbox::Part {
            name,
            content_type: None,
            data,
        })
        .collect();
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    sandbox::Request {
        id: id.to_string(),
        headers,
        parts,
    }
}
