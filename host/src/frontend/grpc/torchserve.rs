//! TorchServe's gRPC inference service, `InferenceAPIsService`, over the core:
//!
//! - `Ping` → `health`: `{"status": "Healthy"}` as TorchServe writes it (or
//!   `Unhealthy`), never an error;
//! - `Predictions` → the handler's final response as `prediction`; an error (or an
//!   answer with an error status) is the call's gRPC status;
//! - `StreamPredictions` → one `PredictionResponse` per piece the handler sends
//!   (`send-intermediate`), the final response last;
//! - `StreamPredictions2` (bidirectional) → the requests of the stream, one after the
//!   other in their order (as a sequence needs), each answered with its pieces; a
//!   request that fails is answered with its `status` set and the stream goes on, as
//!   TorchServe does. `sequence_id` is echoed.
//!
//! The request's `input` map is the handler's request: one part per entry, by name
//! (`{"data": <jpeg>}` is what an HTTP body would be).

use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::proto::google::rpc;
use super::proto::ts_inference::inference_ap_is_service_server::InferenceApIsService;
use super::proto::ts_inference::{
    PredictionResponse, PredictionsRequest, TorchServeHealthResponse,
};
use super::status::{handler_status, status};
use crate::core::{Core, Error, Input, Output, Piece, Streamed};

type Answers = super::Answers<PredictionResponse>;

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

/// A request's answer on its way, and the sequence id to echo.
struct Call {
    answer: Streamed,
    sequence_id: Option<String>,
}

impl Inference {
    /// Queues one request; its answer's pieces follow.
    fn start(
        &self,
        id: &str,
        headers: Vec<(String, String)>,
        r: PredictionsRequest,
    ) -> Result<Call, Error> {
        if r.model_name.is_empty() {
            return Err(Error::invalid("model_name is required"));
        }
        let version = Some(r.model_version.as_str()).filter(|v| !v.is_empty());
        let target = self.core.model(&r.model_name, version)?;
        let request = super::map_request(id, headers, r.input);
        let answer = self
            .core
            .predict_streaming(&target, id, Input::Request(request))?;
        Ok(Call {
            answer,
            sequence_id: r.sequence_id,
        })
    }
}

impl Inference {
    /// One request of a `StreamPredictions2` stream, its answers sent to `tx`; false
    /// when the client went away. A failure is an answer with its status set.
    async fn answer_in_stream(
        &self,
        r: PredictionsRequest,
        id: &str,
        headers: Vec<(String, String)>,
        tx: &mpsc::Sender<Result<PredictionResponse, Status>>,
    ) -> bool {
        let sequence_id = r.sequence_id.clone();
        let mut call = match self.start(id, headers, r) {
            Ok(call) => call,
            Err(e) => return tx.send(Ok(failed(&status(e), sequence_id))).await.is_ok(),
        };
        while let Some(message) = next(&mut call).await {
            let message = message.or_else(|s| Ok(failed(&s, sequence_id.clone())));
            // The client went away: dropping the call cancels the rest.
            if tx.send(message).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The next message of a call: a piece, or the final response (`Ok(None)` after it).
async fn next(call: &mut Call) -> Option<Result<PredictionResponse, Status>> {
    let piece = match call.answer.next().await? {
        Ok(piece) => piece,
        Err(e) => return Some(Err(status(e))),
    };
    let resp = match piece {
        Piece::Intermediate(resp) | Piece::Final(Output::Response(resp)) => resp,
        Piece::Final(Output::Tensors(_)) => {
            return Some(Err(status(Error::internal(
                "the model answered tensors to a request",
            ))));
        }
    };
    if resp.status >= 400 {
        return Some(Err(handler_status(resp.status, &resp.body)));
    }
    Some(Ok(PredictionResponse {
        prediction: resp.body,
        sequence_id: call.sequence_id.clone(),
        status: None,
    }))
}

/// A failed request of a bidirectional stream, as TorchServe answers it there: an
/// empty prediction carrying the status.
fn failed(status: &Status, sequence_id: Option<String>) -> PredictionResponse {
    PredictionResponse {
        prediction: Vec::new(),
        sequence_id,
        status: Some(rpc::Status {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        }),
    }
}

#[tonic::async_trait]
impl InferenceApIsService for Inference {
    async fn ping(&self, _: Request<()>) -> Result<Response<TorchServeHealthResponse>, Status> {
        let text = if self.core.healthy() {
            "Healthy"
        } else {
            "Unhealthy"
        };
        let health = serde_json::to_string_pretty(&serde_json::json!({ "status": text }))
            .unwrap_or_default();
        Ok(Response::new(TorchServeHealthResponse { health }))
    }

    async fn predictions(
        &self,
        req: Request<PredictionsRequest>,
    ) -> Result<Response<PredictionResponse>, Status> {
        let id = super::request_id(req.metadata());
        let headers = super::handler_headers(req.metadata());
        let mut call = self.start(&id, headers, req.into_inner()).map_err(status)?;
        // One answer: the pieces before the final response are not for this caller.
        let mut last = None;
        while let Some(message) = next(&mut call).await {
            last = Some(message?);
        }
        last.map(Response::new)
            .ok_or_else(|| status(Error::internal("the model gave no answer")))
    }

    type StreamPredictionsStream = Answers;

    async fn stream_predictions(
        &self,
        req: Request<PredictionsRequest>,
    ) -> Result<Response<Answers>, Status> {
        let id = super::request_id(req.metadata());
        let headers = super::handler_headers(req.metadata());
        let call = self.start(&id, headers, req.into_inner()).map_err(status)?;
        // Read as the client reads: a slow client holds the handler back, one that
        // goes away drops the call, which cancels the rest.
        let answers = futures_util::stream::unfold(Some(call), |call| async move {
            let mut call = call?;
            let message = next(&mut call).await?;
            let more = message.is_ok().then_some(call);
            Some((message, more))
        });
        Ok(Response::new(answers.boxed()))
    }

    type StreamPredictions2Stream = Answers;

    async fn stream_predictions2(
        &self,
        req: Request<Streaming<PredictionsRequest>>,
    ) -> Result<Response<Answers>, Status> {
        let id = super::request_id(req.metadata());
        let headers = super::handler_headers(req.metadata());
        let this = self.clone();
        let answers = super::in_order(req.into_inner(), id, move |r, call_id, tx| {
            let (this, headers) = (this.clone(), headers.clone());
            async move { this.answer_in_stream(r, &call_id, headers, &tx).await }
        });
        Ok(Response::new(answers))
    }
}
