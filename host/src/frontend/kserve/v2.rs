//! The Open Inference Protocol (KServe v2) over REST, on the inference port:
//!
//! - `GET /v2` (server metadata, its `extensions`), `/v2/health/live`,
//!   `/v2/health/ready` (503 until the startup models are loaded and every model has
//!   its workers);
//! - `GET /v2/models/{m}[/versions/{v}]` (metadata: the declared or derived
//!   inputs and outputs, see `core::signature`), `.../ready`, `.../config` (the subset
//!   of Triton's model configuration that `perf_analyzer` reads);
//! - `POST /v2/models/{m}[/versions/{v}]/infer`, JSON or binary tensors;
//! - `GET /v2/models`, `POST /v2/repository/index` (what is served) and
//!   `POST /v2/repository/models/{m}/load|unload` (behind `enable_model_api`, like
//!   TorchServe's registration; `load` registers `{m}.mar` from the model store).
//!
//! An inference is decoded here ([`codec`]) and run by [`infer`], which gRPC shares.

use std::sync::Arc;

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{codec, infer, json_ok, no_route, readiness, wrong_method};
use crate::core::signature::TensorSpec;
use crate::core::tensor::Datatype;
use crate::core::{Core, Error};
use crate::http::client_body::ClientBody;
use crate::http::{Body, body, bytes_response, handler_headers};
use crate::registry::ModelVersion;

/// The header giving the JSON's length when binary tensors follow it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// What `/v2` says this server does (Triton's extension names).
pub const EXTENSIONS: [&str; 4] = [
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
    "parameters",
];

/// The platform the metadata and the configuration name (Triton's, for TorchScript).
pub const PLATFORM: &str = "pytorch_libtorch";

/// Answers one request under `/v2`.
pub async fn handle(
    core: &Arc<Core>,
    req: Request<ClientBody>,
    request_id: &str,
) -> Result<Response<Body>, Error> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).skip(1).collect();
    let method = req.method().clone();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let (model, version, rest): (Option<&str>, Option<&str>, &[&str]) = match segs.as_slice() {
        ["models", m, "versions", v, rest @ ..] => (Some(m), Some(v), rest),
        ["models", m, rest @ ..] => (Some(m), None, rest),
        _ => (None, None, &[]),
    };
    match (segs.as_slice(), model, rest) {
        ([], _, _) if get => json_ok(json!({
            "name": "wasmserve",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": EXTENSIONS,
        })),
        (["health", "live"], _, _) if get => json_ok(json!({"live": true})),
        (["health", "ready"], _, _) if get => Ok(readiness(core.ready(), json!({}))),
        (["models"], _, _) if get => json_ok(json!({"models": core.model_names()})),
        (["repository", "index"], _, _) if post => json_ok(index(core)),
        (["repository", "models", m, op @ ("load" | "unload")], _, _) if post => {
            repository(core, m, op).await
        }
        (_, Some(m), []) if get => json_ok(metadata(core, m, version)?),
        (_, Some(m), ["ready"]) if get => {
            let ready = core.status(m, version)?.ready();
            Ok(readiness(ready, json!({"name": m})))
        }
        (_, Some(m), ["config"]) if get => json_ok(config(&*core.model(m, version)?)),
        (_, Some(m), ["infer"]) if post => infer(core, req, m, version, request_id).await,
        ([] | ["health", "live" | "ready"] | ["models"], _, _)
        | (["repository", ..], _, _)
        | (_, Some(_), [] | ["ready" | "config" | "infer"]) => Err(wrong_method(&method, &path)),
        _ => Err(no_route(&path)),
    }
}

fn specs(list: &[TensorSpec]) -> Vec<Value> {
    list.iter()
        .map(|s| json!({"name": s.name, "datatype": s.datatype.name(), "shape": s.shape()}))
        .collect()
}

fn metadata(core: &Core, name: &str, version: Option<&str>) -> Result<Value, Error> {
    let target = core.model(name, version)?;
    let versions: Vec<String> = core
        .versions(name)?
        .iter()
        .map(|v| v.version.clone())
        .collect();
    Ok(json!({
        "name": name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": specs(&target.signature.inputs),
        "outputs": specs(&target.signature.outputs),
    }))
}

/// Triton's config name of a datatype (`TYPE_FP32`; BYTES is `TYPE_STRING`).
fn triton_type(d: Datatype) -> String {
    match d {
        Datatype::Bytes => "TYPE_STRING".into(),
        d => format!("TYPE_{}", d.name()),
    }
}

/// Triton's model configuration, the part its clients read: every tensor has a
/// batch dimension first (`max_batch_size` is the version's `batchSize`).
fn config(v: &ModelVersion) -> Value {
    let tensors = |list: &[TensorSpec]| -> Vec<Value> {
        list.iter()
            .map(|s| json!({"name": s.name, "data_type": triton_type(s.datatype), "dims": s.dims}))
            .collect()
    };
    let mut config = json!({
        "name": v.name,
        "platform": PLATFORM,
        "backend": "pytorch",
        "max_batch_size": v.settings.batch_size,
        "input": tensors(&v.signature.inputs),
        "output": tensors(&v.signature.outputs),
    });
    if v.settings.batch_size > 1 {
        config["dynamic_batching"] = json!({
            "preferred_batch_size": [v.settings.batch_size],
            "max_queue_delay_microseconds": v.settings.max_batch_delay.as_micros() as u64,
        });
    }
    config
}

/// Triton's repository index: every served version.
fn index(core: &Core) -> Value {
    let mut out = Vec::new();
    for name in core.model_names() {
        for v in core.versions(&name).unwrap_or_default() {
            let state = if v.status().ready() {
                "READY"
            } else {
                "UNAVAILABLE"
            };
            out.push(json!({"name": name, "version": v.version, "state": state}));
        }
    }
    Value::Array(out)
}

/// `load` registers `{m}.mar` from the model store under the name `m` (a no-op when it
/// is served); `unload` unregisters every version of `m`.
async fn repository(core: &Arc<Core>, name: &str, op: &str) -> Result<Response<Body>, Error> {
    if op == "load" {
        if core.model(name, None).is_err() {
            core.register(crate::core::Registration {
                url: format!("{name}.mar"),
                name: Some(name.to_string()),
                synchronous: true,
                ..Default::default()
            })
            .await?;
        }
        return json_ok(json!({"name": name, "load": true}));
    }
    let default = core.model(name, None)?.version.clone();
    let versions = core.versions(name)?;
    // The default version goes last: it cannot go while others stay.
    for v in versions.iter().filter(|v| v.version != default) {
        core.unregister(name, Some(&v.version)).await?;
    }
    core.unregister(name, Some(&default)).await?;
    json_ok(json!({"name": name, "unload": true}))
}

async fn infer(
    core: &Arc<Core>,
    req: Request<ClientBody>,
    name: &str,
    version: Option<&str>,
    request_id: &str,
) -> Result<Response<Body>, Error> {
    let target = core.model(name, version)?;
    let (parts, body) = req.into_parts();
    let header_length = match parts.headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::invalid("Inference-Header-Content-Length must be a number of bytes")
                })?,
        ),
    };
    let bytes = body::read_limited(
        body,
        core.config.max_request_size,
        core.config.client_timeout,
    )
    .await?;
    let request = codec::decode_request(&bytes, header_length)?;
    drop(bytes);
    let headers = handler_headers(
        &parts.headers,
        &[
            CONTENT_TYPE.as_str(),
            CONTENT_LENGTH.as_str(),
            HEADER_LENGTH,
        ],
    );
    let id = request.id.clone();
    let (outputs, binary) = infer::run(core, &target, request, headers, request_id).await?;
    let encoded = codec::encode_response(
        &target.name,
        &target.version,
        id.as_deref(),
        &outputs,
        &binary,
    );
    let content_type = match encoded.header_length {
        Some(_) => "application/octet-stream",
        None => "application/json",
    };
    let mut resp = bytes_response(StatusCode::OK, content_type, encoded.body.into());
    if let Some(n) = encoded.header_length {
        resp.headers_mut()
            .insert(HEADER_LENGTH, HeaderValue::from(n as u64));
    }
    Ok(resp)
}
