//! KServe v2's gRPC service, `inference.GRPCInferenceService`, with Triton's
//! `ModelConfig` and `ModelStreamInfer`: the messages mapped to the Open Inference
//! Protocol's tensors (`frontend::kserve::codec`) and run as REST's v2 runs them
//! (`frontend::kserve::infer`): numeric tensors to the forward, BYTES through the
//! handler.
//!
//! - Inputs come as `raw_input_contents` (one per input, as tritonclient sends them;
//!   then no typed `contents`) or typed `contents` (FP16/BF16 only raw). Outputs go
//!   as `raw_output_contents`, the one form tritonclient reads.
//! - `ModelStreamInfer` answers each request of the stream in order. A BYTES request
//!   of one element through a streaming handler is answered with one response per
//!   piece (`send-intermediate`), the final one last; a request that fails is answered
//!   with its `error_message` and the stream goes on, as Triton does.
//! - `ModelReady` of an unknown model is `ready: false`, as Triton answers.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::proto::kserve::grpc_inference_service_server::GrpcInferenceService;
use super::proto::kserve::infer_parameter::ParameterChoice;
use super::proto::kserve::model_config::SchedulingChoice;
use super::proto::kserve::model_infer_request::InferInputTensor;
use super::proto::kserve::model_infer_response::InferOutputTensor;
use super::proto::kserve::model_metadata_response::TensorMetadata;
use super::proto::kserve::{self as pb, InferParameter, InferTensorContents};
use super::status::status;
use crate::core::signature::TensorSpec;
use crate::core::tensor::Datatype;
use crate::core::{Core, Error, Input, Output, Piece};
use crate::frontend::kserve::codec::{self, Data, InferRequest, Requested, Tensor, invalid};
use crate::frontend::kserve::infer::{self, Route};
use crate::frontend::kserve::v2::{EXTENSIONS, PLATFORM};
use crate::registry::ModelVersion;

type Answers = super::Answers<pb::ModelStreamInferResponse>;

/// The service.
#[derive(Clone)]
pub struct Inference {
    core: Arc<Core>,
}

impl Inference {
    pub fn new(core: Arc<Core>) -> Inference {
        Inference { core }
    }
}

fn version(v: &str) -> Option<&str> {
    Some(v).filter(|v| !v.is_empty())
}

/// A request parameter as the codec keeps them (JSON scalars).
fn parameter(p: &InferParameter) -> Value {
    match &p.parameter_choice {
        Some(ParameterChoice::BoolParam(b)) => Value::Bool(*b),
        Some(ParameterChoice::Int64Param(n)) => (*n).into(),
        Some(ParameterChoice::Uint64Param(n)) => (*n).into(),
        Some(ParameterChoice::DoubleParam(x)) => serde_json::Number::from_f64(*x)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Some(ParameterChoice::StringParam(s)) => Value::String(s.clone()),
        None => Value::Null,
    }
}

fn parameters(p: &HashMap<String, InferParameter>) -> Map<String, Value> {
    p.iter().map(|(k, v)| (k.clone(), parameter(v))).collect()
}

fn to_parameters(p: &Map<String, Value>) -> HashMap<String, InferParameter> {
    p.iter()
        .filter_map(|(k, v)| {
            let choice = match v {
                Value::Bool(b) => ParameterChoice::BoolParam(*b),
                Value::String(s) => ParameterChoice::StringParam(s.clone()),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => ParameterChoice::Int64Param(i),
                    (None, Some(u), _) => ParameterChoice::Uint64Param(u),
                    (None, None, Some(x)) => ParameterChoice::DoubleParam(x),
                    _ => return None,
                },
                _ => return None,
            };
            Some((
                k.clone(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            ))
        })
        .collect()
}

/// Typed contents as the codec's data: exactly `elements` values of the field that
/// `datatype` uses, narrowed where the field is wider than the type.
fn typed_data(
    at: &str,
    datatype: Datatype,
    elements: u64,
    c: &InferTensorContents,
) -> Result<Data, Error> {
    fn count(at: &str, field: &str, have: usize, want: u64) -> Result<(), Error> {
        if have as u64 != want {
            return Err(invalid(format!(
                "{at}: its shape says {want} elements but contents.{field} holds {have}"
            )));
        }
        Ok(())
    }
    fn narrow<T, U: TryFrom<T> + Copy>(
        at: &str,
        what: Datatype,
        values: impl Iterator<Item = T>,
        bytes: impl Fn(U) -> Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        for v in values {
            let v = U::try_from(v)
                .map_err(|_| invalid(format!("{at}: a value does not fit {what}")))?;
            out.extend(bytes(v));
        }
        Ok(out)
    }
    let raw = match datatype {
        Datatype::Bool => {
            count(at, "bool_contents", c.bool_contents.len(), elements)?;
            c.bool_contents.iter().map(|&b| u8::from(b)).collect()
        }
        Datatype::I8 | Datatype::I16 | Datatype::I32 => {
            count(at, "int_contents", c.int_contents.len(), elements)?;
            let it = c.int_contents.iter().copied();
            match datatype {
                Datatype::I8 => narrow(at, datatype, it, |v: i8| v.to_le_bytes().to_vec())?,
                Datatype::I16 => narrow(at, datatype, it, |v: i16| v.to_le_bytes().to_vec())?,
                _ => it.flat_map(i32::to_le_bytes).collect(),
            }
        }
        Datatype::I64 => {
            count(at, "int64_contents", c.int64_contents.len(), elements)?;
            c.int64_contents
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Datatype::U8 | Datatype::U16 | Datatype::U32 => {
            count(at, "uint_contents", c.uint_contents.len(), elements)?;
            let it = c.uint_contents.iter().copied();
            match datatype {
                Datatype::U8 => narrow(at, datatype, it, |v: u8| vec![v])?,
                Datatype::U16 => narrow(at, datatype, it, |v: u16| v.to_le_bytes().to_vec())?,
                _ => it.flat_map(u32::to_le_bytes).collect(),
            }
        }
        Datatype::U64 => {
            count(at, "uint64_contents", c.uint64_contents.len(), elements)?;
            c.uint64_contents
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Datatype::F32 => {
            count(at, "fp32_contents", c.fp32_contents.len(), elements)?;
            c.fp32_contents
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Datatype::F64 => {
            count(at, "fp64_contents", c.fp64_contents.len(), elements)?;
            c.fp64_contents
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        Datatype::F16 | Datatype::Bf16 => {
            return Err(invalid(format!(
                "{at}: {datatype} tensors have no typed contents; send them in raw_input_contents"
            )));
        }
        Datatype::Bytes => {
            count(at, "bytes_contents", c.bytes_contents.len(), elements)?;
            return Ok(Data::Bytes(
                c.bytes_contents.iter().map(|b| b.to_vec()).collect(),
            ));
        }
    };
    Ok(Data::Raw(raw))
}

/// A `ModelInferRequest` as the protocol's request, checked as REST's are.
fn decode(r: pb::ModelInferRequest) -> Result<InferRequest, Error> {
    let raw = r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(invalid(format!(
            "the request has {} raw_input_contents for {} inputs: send one per input, in order",
            raw.len(),
            r.inputs.len()
        )));
    }
    let parameters = parameters(&r.parameters);
    codec::check_parameters("the request's", &parameters)?;
    let mut inputs: Vec<Tensor> = Vec::with_capacity(r.inputs.len());
    for (i, input) in r.inputs.into_iter().enumerate() {
        let InferInputTensor {
            name,
            datatype,
            shape,
            parameters,
            contents,
        } = input;
        let at = format!("input {name:?}");
        let (datatype, shape, elements) =
            codec::input_header(&at, &inputs, &name, &datatype, &shape)?;
        let params = self::parameters(&parameters);
        codec::check_parameters(&at, &params)?;
        let data = match (raw.get(i), contents) {
            (Some(_), Some(c)) if c != InferTensorContents::default() => {
                return Err(invalid(format!(
                    "{at} has both contents and raw_input_contents: send one"
                )));
            }
            (Some(bytes), _) => codec::binary_data(&at, datatype, elements, bytes)?,
            (None, Some(c)) => typed_data(&at, datatype, elements, &c)?,
            (None, None) => {
                return Err(invalid(format!(
                    "{at} has no data: set its contents or send raw_input_contents"
                )));
            }
        };
        inputs.push(Tensor {
            name,
            datatype,
            shape,
            parameters: params,
            data,
        });
    }
    let outputs = r
        .outputs
        .into_iter()
        .map(|o| Requested {
            name: o.name,
            binary: None,
        })
        .collect();
    Ok(InferRequest {
        id: Some(r.id).filter(|id| !id.is_empty()),
        parameters,
        inputs,
        outputs,
    })
}

/// The outputs as a `ModelInferResponse`, their data raw.
fn encode(
    target: &ModelVersion,
    id: Option<String>,
    outputs: Vec<Tensor>,
) -> pb::ModelInferResponse {
    let mut raw = Vec::with_capacity(outputs.len());
    let outputs = outputs
        .into_iter()
        .map(|t| {
            let bytes = match t.data {
                Data::Raw(bytes) => bytes,
                data => {
                    let mut bytes = Vec::new();
                    codec::append_binary(&data, &mut bytes);
                    bytes
                }
            };
            raw.push(bytes::Bytes::from(bytes));
            InferOutputTensor {
                name: t.name,
                datatype: t.datatype.name().to_string(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                parameters: to_parameters(&t.parameters),
                contents: None,
            }
        })
        .collect();
    pb::ModelInferResponse {
        model_name: target.name.clone(),
        model_version: target.version.clone(),
        id: id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    }
}

fn metadata(specs: &[TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.name().to_string(),
            shape: s.shape(),
        })
        .collect()
}

/// Triton's `DataType` of a datatype (BYTES is `TYPE_STRING`).
fn data_type(d: Datatype) -> i32 {
    let name = match d {
        Datatype::Bytes => "TYPE_STRING".to_string(),
        d => format!("TYPE_{}", d.name()),
    };
    pb::DataType::from_str_name(&name).unwrap_or(pb::DataType::TypeInvalid) as i32
}

/// Triton's model configuration, as REST's `/config` gives it.
fn config(v: &ModelVersion) -> pb::ModelConfig {
    let batch = v.settings.batch_size;
    pb::ModelConfig {
        name: v.name.clone(),
        platform: PLATFORM.to_string(),
        backend: "pytorch".to_string(),
        max_batch_size: batch as i32,
        input: v
            .signature
            .inputs
            .iter()
            .map(|s| pb::ModelInput {
                name: s.name.clone(),
                data_type: data_type(s.datatype),
                dims: s.dims.clone(),
                ..Default::default()
            })
            .collect(),
        output: v
            .signature
            .outputs
            .iter()
            .map(|s| pb::ModelOutput {
                name: s.name.clone(),
                data_type: data_type(s.datatype),
                dims: s.dims.clone(),
                ..Default::default()
            })
            .collect(),
        scheduling_choice: (batch > 1).then(|| {
            SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: vec![batch as i32],
                max_queue_delay_microseconds: v.settings.max_batch_delay.as_micros() as u64,
                ..Default::default()
            })
        }),
        ..Default::default()
    }
}

impl Inference {
    /// One `ModelInfer`.
    async fn infer(
        &self,
        id: &str,
        headers: Vec<(String, String)>,
        r: pb::ModelInferRequest,
    ) -> Result<pb::ModelInferResponse, Error> {
        let target = self.core.model(&r.model_name, version(&r.model_version))?;
        let request = decode(r)?;
        let request_id = request.id.clone();
        let (outputs, _) = infer::run(&self.core, &target, request, headers, id).await?;
        Ok(encode(&target, request_id, outputs))
    }

    /// One request of a `ModelStreamInfer` stream, its answers sent to `tx`; false when
    /// the client went away.
    async fn stream_one(
        &self,
        id: &str,
        headers: Vec<(String, String)>,
        r: pb::ModelInferRequest,
        tx: &mpsc::Sender<Result<pb::ModelStreamInferResponse, Status>>,
    ) -> bool {
        let e = match self.stream_answers(id, headers, r, tx).await {
            Ok(sent) => return sent,
            Err(e) => e,
        };
        let message = pb::ModelStreamInferResponse {
            error_message: e.to_string(),
            infer_response: None,
        };
        tx.send(Ok(message)).await.is_ok()
    }

    async fn stream_answers(
        &self,
        id: &str,
        headers: Vec<(String, String)>,
        r: pb::ModelInferRequest,
        tx: &mpsc::Sender<Result<pb::ModelStreamInferResponse, Status>>,
    ) -> Result<bool, Error> {
        let send = |resp: pb::ModelInferResponse| {
            tx.send(Ok(pb::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(resp),
            }))
        };
        let target = self.core.model(&r.model_name, version(&r.model_version))?;
        let request = decode(r)?;
        let request_id = request.id.clone();
        // One handler request: its pieces are answers of their own.
        if let Route::Handler { count: 1 } = infer::route(&target, &request)? {
            let shape = request.inputs[0].shape.clone();
            let handler_request = infer::handler_request(&request, 0, &headers, id);
            let mut answer =
                self.core
                    .predict_streaming(&target, id, Input::Request(handler_request))?;
            while let Some(piece) = answer.next().await {
                let resp = match piece? {
                    Piece::Intermediate(resp) | Piece::Final(Output::Response(resp)) => resp,
                    Piece::Final(Output::Tensors(_)) => {
                        return Err(Error::internal("the model answered tensors to a request"));
                    }
                };
                if resp.status >= 400 {
                    return Err(Error::Prediction {
                        status: resp.status,
                        message: String::from_utf8_lossy(&resp.body).into_owned(),
                    });
                }
                let output = infer::bytes_output(&target, &request, shape.clone(), vec![resp]);
                let (outputs, _) = infer::select_outputs(&request, vec![output])?;
                if send(encode(&target, request_id.clone(), outputs))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        let (outputs, _) = infer::run(&self.core, &target, request, headers, id).await?;
        Ok(send(encode(&target, request_id, outputs)).await.is_ok())
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.core.ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = req.into_inner();
        let ready = self
            .core
            .status(&r.name, version(&r.version))
            .is_ok_and(|s| s.ready());
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "wasmserve".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        let target = self
            .core
            .model(&r.name, version(&r.version))
            .map_err(status)?;
        let versions = self
            .core
            .versions(&r.name)
            .map_err(status)?
            .iter()
            .map(|v| v.version.clone())
            .collect();
        Ok(Response::new(pb::ModelMetadataResponse {
            name: r.name,
            versions,
            platform: PLATFORM.into(),
            inputs: metadata(&target.signature.inputs),
            outputs: metadata(&target.signature.outputs),
        }))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = req.into_inner();
        let target = self
            .core
            .model(&r.name, version(&r.version))
            .map_err(status)?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config(&target)),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let id = super::request_id(req.metadata());
        let headers = super::handler_headers(req.metadata());
        let resp = self
            .infer(&id, headers, req.into_inner())
            .await
            .map_err(status)?;
        Ok(Response::new(resp))
    }

    type ModelStreamInferStream = Answers;

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Answers>, Status> {
        let id = super::request_id(req.metadata());
        let headers = super::handler_headers(req.metadata());
        let this = self.clone();
        let answers = super::in_order(req.into_inner(), id, move |r, call_id, tx| {
            let (this, headers) = (this.clone(), headers.clone());
            async move { this.stream_one(&call_id, headers, r, &tx).await }
        });
        Ok(Response::new(answers))
    }
}
