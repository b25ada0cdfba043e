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
//! Two ways into a model. Numeric tensors go to the forward as they are (the handler
//! is bypassed, as Triton does), matched to its arguments by name; the outputs come
//! back as tensors. BYTES tensors go through the handler: element `i` of every input
//! becomes request `i`, with one part per input named after it (so a JPEG sent as a
//! BYTES tensor reaches `image_classifier` as an HTTP body would); the handler's
//! answers come back as one BYTES output. Either way the requests go through the
//! version's queue and batching like every other.

use std::sync::Arc;

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::codec::{self, Data, InferRequest, Tensor};
use super::{json_ok, no_route, readiness, wrong_method};
use crate::core::signature::{Signature, TensorSpec, default_output_name};
use crate::core::tensor::Datatype;
use crate::core::{Core, Error, Input, Output};
use crate::http::client_body::ClientBody;
use crate::http::{Body, body, bytes_response, handler_headers};
use crate::registry::ModelVersion;
use crate::runtime;

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
const PLATFORM: &str = "pytorch_libtorch";

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
    let mut request = codec::decode_request(&bytes, header_length)?;
    drop(bytes);
    if request.inputs.is_empty() {
        return Err(Error::invalid("the request has no inputs"));
    }
    check_requested(&target.signature, &request)?;
    let bytes_inputs = request
        .inputs
        .iter()
        .filter(|t| t.datatype == Datatype::Bytes)
        .count();
    let outputs = match bytes_inputs {
        0 => {
            let inputs = std::mem::take(&mut request.inputs);
            by_tensors(core, &target, inputs, request_id).await?
        }
        n if n == request.inputs.len() => {
            by_handler(core, &target, &request, &parts.headers, request_id).await?
        }
        _ => {
            return Err(Error::invalid(
                "the inputs mix BYTES and numeric tensors: BYTES inputs go to the model's \
                 handler, numeric ones to its forward; send one kind",
            ));
        }
    };
    let (outputs, binary) = select_outputs(&request, outputs)?;
    let encoded = codec::encode_response(
        &target.name,
        &target.version,
        request.id.as_deref(),
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

/// Asked-for outputs a model declares none of are refused before it runs.
fn check_requested(signature: &Signature, request: &InferRequest) -> Result<(), Error> {
    if !signature.outputs_declared {
        return Ok(());
    }
    let bytes_path = request.inputs.iter().all(|t| t.datatype == Datatype::Bytes);
    for r in &request.outputs {
        if !bytes_path && !signature.outputs.iter().any(|o| o.name == r.name) {
            return Err(unknown_output(
                &r.name,
                signature.outputs.iter().map(|o| &o.name),
            ));
        }
    }
    Ok(())
}

fn unknown_output<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Error {
    let known: Vec<&str> = known.map(String::as_str).collect();
    Error::invalid(format!(
        "unknown output {name:?}: the model's outputs are {}",
        known.join(", ")
    ))
}

/// The outputs the client asked for, in its order, and whether each goes binary.
fn select_outputs(
    request: &InferRequest,
    outputs: Vec<Tensor>,
) -> Result<(Vec<Tensor>, Vec<bool>), Error> {
    let default = request.binary_by_default();
    if request.outputs.is_empty() {
        let binary = vec![default; outputs.len()];
        return Ok((outputs, binary));
    }
    let mut chosen = Vec::with_capacity(request.outputs.len());
    let mut binary = Vec::with_capacity(request.outputs.len());
    for r in &request.outputs {
        let t = outputs
            .iter()
            .find(|t| t.name == r.name)
            .ok_or_else(|| unknown_output(&r.name, outputs.iter().map(|t| &t.name)))?;
        chosen.push(t.clone());
        binary.push(r.binary.unwrap_or(default));
    }
    Ok((chosen, binary))
}

/// Numeric tensors to the forward's arguments: by the declared or the forward's own
/// argument names; a lone input goes to a lone argument whatever its name; Triton's
/// `INPUT__n` names go by their number.
fn forward_inputs(
    signature: &Signature,
    inputs: Vec<Tensor>,
) -> Result<Vec<runtime::Tensor>, Error> {
    let specs = &signature.inputs;
    let by_name = inputs
        .iter()
        .map(|t| specs.iter().position(|s| s.name == t.name))
        .collect::<Option<Vec<usize>>>();
    let by_number = || {
        inputs
            .iter()
            .map(|t| {
                t.name
                    .strip_prefix("INPUT__")
                    .or_else(|| t.name.strip_prefix("input__"))
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .collect::<Option<Vec<usize>>>()
    };
    let positions = match by_name {
        Some(p) => p,
        None if inputs.len() == 1 && specs.len() <= 1 && !signature.inputs_declared => vec![0],
        None => by_number().ok_or_else(|| {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            let unknown = inputs
                .iter()
                .find(|t| !specs.iter().any(|s| s.name == t.name))
                .map(|t| t.name.as_str())
                .unwrap_or_default();
            Error::invalid(format!(
                "unknown input {unknown:?}: the model takes {}",
                names.join(", ")
            ))
        })?,
    };
    let mut slots: Vec<Option<runtime::Tensor>> =
        vec![None; positions.iter().max().map_or(0, |m| m + 1)];
    for (t, &at) in inputs.into_iter().zip(&positions) {
        if let Some(spec) = specs.get(at).filter(|_| signature.inputs_declared) {
            check_against(&t, spec)?;
        }
        let dtype = t.datatype.dtype().ok_or_else(|| {
            Error::invalid(format!(
                "input {:?}: the model's forward cannot take {} tensors (libtorch has no such type); send INT64 or another signed type",
                t.name, t.datatype
            ))
        })?;
        let Data::Raw(data) = t.data else {
            return Err(Error::internal("a numeric tensor without raw data"));
        };
        if slots[at].is_some() {
            return Err(Error::invalid(format!("input {:?} is given twice", t.name)));
        }
        // Moved, not copied: the request's bytes are the forward's input.
        slots[at] = Some(runtime::Tensor {
            name: t.name,
            dtype,
            shape: t.shape,
            data,
        });
    }
    let required = if signature.inputs_declared {
        specs.len()
    } else {
        slots.len()
    };
    if slots.len() < required || slots.iter().any(Option::is_none) {
        let missing: Vec<&str> = specs
            .iter()
            .enumerate()
            .filter(|(i, _)| slots.get(*i).is_none_or(Option::is_none))
            .map(|(_, s)| s.name.as_str())
            .collect();
        return Err(Error::invalid(format!(
            "missing input(s) {}: the model takes {}",
            missing.join(", "),
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(slots.into_iter().flatten().collect())
}

/// A tensor against its declaration: the datatype, and the shape (a batch dimension,
/// then `dims`, `-1` matching any size).
fn check_against(t: &Tensor, spec: &TensorSpec) -> Result<(), Error> {
    if t.datatype != spec.datatype {
        return Err(Error::invalid(format!(
            "input {:?} must be {}, not {}",
            t.name, spec.datatype, t.datatype
        )));
    }
    let want = spec.shape();
    let fits = t.shape.len() == want.len()
        && t.shape
            .iter()
            .zip(&want)
            .all(|(&d, &w)| w == -1 || d as i64 == w);
    if !fits {
        return Err(Error::invalid(format!(
            "input {:?} has shape {:?}; the model takes {want:?} (-1: any size)",
            t.name, t.shape
        )));
    }
    Ok(())
}

async fn by_tensors(
    core: &Arc<Core>,
    target: &Arc<ModelVersion>,
    inputs: Vec<Tensor>,
    request_id: &str,
) -> Result<Vec<Tensor>, Error> {
    let inputs = forward_inputs(&target.signature, inputs)?;
    let predicted = core
        .predict(target, request_id, Input::Tensors(inputs))
        .await?;
    let Output::Tensors(outputs) = predicted else {
        return Err(Error::internal(
            "the model answered tensors with a response",
        ));
    };
    Ok(outputs
        .into_iter()
        .enumerate()
        .map(|(i, t)| Tensor {
            name: target.signature.output_name(i, &t.name),
            datatype: Datatype::of(t.dtype),
            shape: t.shape,
            parameters: Map::new(),
            data: Data::Raw(t.data),
        })
        .collect())
}

/// BYTES tensors through the handler: element `i` of each input is a part of request
/// `i`; the answers are one BYTES output of the inputs' shape.
async fn by_handler(
    core: &Arc<Core>,
    target: &Arc<ModelVersion>,
    request: &InferRequest,
    http_headers: &hyper::HeaderMap,
    request_id: &str,
) -> Result<Vec<Tensor>, Error> {
    let first = &request.inputs[0];
    let count = first.elements() as usize;
    if let Some(other) = request
        .inputs
        .iter()
        .find(|t| t.elements() as usize != count)
    {
        return Err(Error::invalid(format!(
            "the BYTES inputs {:?} and {:?} have different numbers of elements: element i of \
             each is one request to the handler",
            first.name, other.name
        )));
    }
    if count == 0 {
        return Err(Error::invalid(format!(
            "input {:?} has no elements",
            first.name
        )));
    }
    let headers = handler_headers(
        http_headers,
        &[
            CONTENT_TYPE.as_str(),
            CONTENT_LENGTH.as_str(),
            HEADER_LENGTH,
        ],
    );
    let requests: Vec<runtime::Request> = (0..count)
        .map(|i| runtime::Request {
            id: request_id.to_string(),
            headers: headers.clone(),
            parts: request
                .inputs
                .iter()
                .map(|t| runtime::Part {
                    name: t.name.clone(),
                    content_type: t
                        .parameters
                        .get("content_type")
                        .and_then(Value::as_str)
                        .map(String::from),
                    data: match &t.data {
                        Data::Bytes(items) => items[i].clone(),
                        Data::Raw(_) => Vec::new(),
                    },
                })
                .collect(),
        })
        .collect();
    let responses = core.predict_each(target, request_id, requests).await?;
    let content_type = responses.first().and_then(|resp| {
        resp.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
    });
    let items: Vec<Vec<u8>> = responses.into_iter().map(|r| r.body).collect();
    let name = match request.outputs.as_slice() {
        [one] => one.name.clone(),
        _ => target
            .signature
            .outputs
            .iter()
            .find(|o| target.signature.outputs_declared && o.datatype == Datatype::Bytes)
            .map(|o| o.name.clone())
            .unwrap_or_else(|| default_output_name(0)),
    };
    let mut parameters = Map::new();
    if let Some(ct) = content_type {
        parameters.insert("content_type".into(), ct.into());
    }
    Ok(vec![Tensor {
        name,
        datatype: Datatype::Bytes,
        shape: first.shape.clone(),
        parameters,
        data: Data::Bytes(items),
    }])
}
