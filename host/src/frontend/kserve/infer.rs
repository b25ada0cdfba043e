//! What an Open Inference Protocol inference does, whatever carries it (REST in
//! [`super::v2`], gRPC in `frontend::grpc::kserve`): a decoded [`InferRequest`] in, the
//! outputs the client asked for out.
//!
//! Two ways into a model. Numeric tensors go to the forward as they are (the handler
//! is bypassed, as Triton does), matched to its arguments by name; the outputs come
//! back as tensors. BYTES tensors go through the handler: element `i` of every input
//! becomes request `i`, with one part per input named after it (so a JPEG sent as a
//! BYTES tensor reaches `image_classifier` as an HTTP body would); the handler's
//! answers come back as one BYTES output. Either way the requests go through the
//! version's queue and batching like every other.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::codec::{Data, InferRequest, Tensor};
use crate::core::signature::{Signature, TensorSpec, default_output_name};
use crate::core::tensor::Datatype;
use crate::core::{Core, Error, Input, Output};
use crate::registry::ModelVersion;
use crate::sandbox;

/// Which way a request goes into its model.
pub enum Route {
    /// Numeric tensors, to the forward.
    Tensors,
    /// BYTES tensors, to the handler, `count` requests of it.
    Handler { count: usize },
}

/// Checks `request` against `target` and says which way it goes.
pub fn route(target: &ModelVersion, request: &InferRequest) -> Result<Route, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid("the request has no inputs"));
    }
    check_requested(&target.signature, request)?;
    let bytes_inputs = request
        .inputs
        .iter()
        .filter(|t| t.datatype == Datatype::Bytes)
        .count();
    match bytes_inputs {
        0 => Ok(Route::Tensors),
        n if n == request.inputs.len() => Ok(Route::Handler {
            count: handler_requests(request)?,
        }),
        _ => Err(Error::invalid(
            "the inputs mix BYTES and numeric tensors: BYTES inputs go to the model's \
             handler, numeric ones to its forward; send one kind",
        )),
    }
}

/// Runs `request` on `target` (`headers`: what the handler sees of the call's own
/// headers or metadata). The outputs the client asked for, in its order, and whether
/// each goes binary (REST's binary tensor extension; gRPC sends every one raw).
pub async fn run(
    core: &Arc<Core>,
    target: &Arc<ModelVersion>,
    mut request: InferRequest,
    headers: Vec<(String, String)>,
    request_id: &str,
) -> Result<(Vec<Tensor>, Vec<bool>), Error> {
    let outputs = match route(target, &request)? {
        Route::Tensors => {
            let inputs = std::mem::take(&mut request.inputs);
            by_tensors(core, target, inputs, request_id).await?
        }
        Route::Handler { .. } => by_handler(core, target, &request, headers, request_id).await?,
    };
    select_outputs(&request, outputs)
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
pub fn select_outputs(
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
) -> Result<Vec<sandbox::Tensor>, Error> {
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
    let mut slots: Vec<Option<sandbox::Tensor>> =
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
        slots[at] = Some(sandbox::Tensor {
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

pub async fn by_tensors(
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
    headers: Vec<(String, String)>,
    request_id: &str,
) -> Result<Vec<Tensor>, Error> {
    let count = handler_requests(request)?;
    let first = &request.inputs[0];
    let requests: Vec<sandbox::Request> = (0..count)
        .map(|i| handler_request(request, i, &headers, request_id))
        .collect();
    let responses = core.predict_each(target, request_id, requests).await?;
    Ok(vec![bytes_output(
        target,
        request,
        first.shape.clone(),
        responses,
    )])
}

/// How many handler requests a BYTES request makes: the elements of each input, which
/// must agree.
fn handler_requests(request: &InferRequest) -> Result<usize, Error> {
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
    Ok(count)
}

/// The handler's request `i` of a BYTES request: element `i` of each input, as a part
/// named after it.
pub fn handler_request(
    request: &InferRequest,
    i: usize,
    headers: &[(String, String)],
    request_id: &str,
) -> sandbox::Request {
    sandbox::Request {
        id: request_id.to_string(),
        headers: headers.to_vec(),
        parts: request
            .inputs
            .iter()
            .map(|t| sandbox::Part {
                name: t.name.clone(),
                content_type: t
                    .parameters
                    .get("content_type")
                    .and_then(Value::as_str)
                    .map(String::from),
                data: match &t.data {
                    Data::Bytes(items) => items.get(i).cloned().unwrap_or_default(),
                    Data::Raw(_) => Vec::new(),
                },
            })
            .collect(),
    }
}

/// The handler's answers as one BYTES output of `shape` (the inputs'), named as the
/// client asked or as the model declares its BYTES output, typed by the first answer's
/// content type.
pub fn bytes_output(
    target: &ModelVersion,
    request: &InferRequest,
    shape: Vec<u64>,
    responses: Vec<sandbox::Response>,
) -> Tensor {
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
    Tensor {
        name,
        datatype: Datatype::Bytes,
        shape,
        parameters,
        data: Data::Bytes(items),
    }
}
