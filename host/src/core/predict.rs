//! The one way into a model: queue the input on a version, wait for its answer within
//! the version's `responseTimeout`, check the answer's size, count it. Either as one
//! answer ([`Core::predict`]) or as the pieces a streaming handler sends before its
//! final answer ([`Core::predict_streaming`], read with [`Streamed::next`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Core, Error, Input, Output};
use crate::registry::{LookupError, ModelVersion};
use crate::sandbox::Response;
use crate::worker::stream::{self, PieceReceiver, PieceSender};
use crate::worker::{Job, PredictError, SubmitError};

pub(super) type Reply = oneshot::Receiver<Result<Output, PredictError>>;

/// One piece of a streamed answer.
#[derive(Debug)]
pub enum Piece {
    /// A response the handler sent ahead of its final one (`send-intermediate`).
    Intermediate(Response),
    /// The final answer: nothing comes after it.
    Final(Output),
}

/// An answer on its way, piece by piece ([`Core::predict_streaming`]). Dropping it
/// cancels the rest: the handler's next `send-intermediate` fails, and a job still
/// queued is not run.
pub struct Streamed {
    pieces: PieceReceiver,
    reply: Option<Reply>,
    /// The final answer, once it came (the pieces queued before it go out first).
    last: Option<Result<Output, Error>>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    started: Instant,
    max_response_size: usize,
    name: String,
    version: String,
}

impl Streamed {
    /// The next piece; `None` after the final answer or an error.
    pub async fn next(&mut self) -> Option<Result<Piece, Error>> {
        loop {
            if let Some(piece) = self.pieces.try_recv() {
                return Some(Ok(Piece::Intermediate(piece)));
            }
            if let Some(last) = self.last.take() {
                return Some(last.map(Piece::Final));
            }
            let reply = self.reply.as_mut()?;
            enum Woke {
                Queued,
                Replied(Result<Output, PredictError>),
                TimedOut,
            }
            let woke = tokio::select! {
                biased;
                _ = self.pieces.queued() => Woke::Queued,
                result = reply => Woke::Replied(received(result)),
                _ = tokio::time::sleep_until(self.deadline) => Woke::TimedOut,
            };
            match woke {
                Woke::Queued => {}
                Woke::Replied(result) => {
                    self.reply = None;
                    crate::metrics::global().inference(
                        &self.name,
                        &self.version,
                        self.started.elapsed(),
                    );
                    // The pieces sent before the final answer are queued by now.
                    self.last = Some(finish(result, self.max_response_size));
                }
                Woke::TimedOut => {
                    self.reply = None;
                    return Some(Err(timed_out(self.timeout)));
                }
            }
        }
    }
}

/// The most header bytes a handler's answer may carry (`max_response_size` bounds its
/// body).
pub const MAX_HANDLER_HEADERS: usize = 64 * 1024;

impl Core {
    /// Runs `input` on `target` (`id`: the request id, for the logs).
    pub async fn predict(
        &self,
        target: &Arc<ModelVersion>,
        id: &str,
        input: Input,
    ) -> Result<Output, Error> {
        let started = Instant::now();
        let result = self.predict_on(target, id, input).await;
        crate::metrics::global().inference(&target.name, &target.version, started.elapsed());
        result
    }

    /// Runs several handler requests on `target` at once (they are queued together, so
    /// that they batch) and returns the handlers' responses in order; the first
    /// failure, or a response with an error status, fails the whole.
    pub async fn predict_each(
        &self,
        target: &Arc<ModelVersion>,
        id: &str,
        requests: Vec<crate::sandbox::Request>,
    ) -> Result<Vec<Response>, Error> {
        let answers = futures_util::future::join_all(
            requests
                .into_iter()
                .map(|r| self.predict(target, id, Input::Request(r))),
        )
        .await;
        answers
            .into_iter()
            .map(|answer| match answer? {
                Output::Response(resp) if resp.status >= 400 => Err(Error::Prediction {
                    status: resp.status,
                    message: String::from_utf8_lossy(&resp.body).into_owned(),
                }),
                Output::Response(resp) => Ok(resp),
                Output::Tensors(_) => {
                    Err(Error::internal("the model answered tensors to a request"))
                }
            })
            .collect()
    }

    /// Runs `input` on `target` as [`Core::predict`] does, handing out the handler's
    /// intermediate responses as they come, then the final answer. Fails at once when
    /// the request cannot be queued.
    pub fn predict_streaming(
        &self,
        target: &Arc<ModelVersion>,
        id: &str,
        input: Input,
    ) -> Result<Streamed, Error> {
        let started = Instant::now();
        let (tx, pieces) = stream::channel(self.config.max_response_size);
        let reply = submit(target, id, input, Some(tx))?;
        let timeout = target.settings.response_timeout;
        Ok(Streamed {
            pieces,
            reply: Some(reply),
            last: None,
            deadline: tokio::time::Instant::now() + timeout + Duration::from_secs(1),
            timeout,
            started,
            max_response_size: self.config.max_response_size,
            name: target.name.clone(),
            version: target.version.clone(),
        })
    }

    async fn predict_on(
        &self,
        target: &Arc<ModelVersion>,
        id: &str,
        input: Input,
    ) -> Result<Output, Error> {
        let rx = submit(target, id, input, None)?;
        // The lane bounds each handler call by the same timeout and answers first; the
        // grace second lets its message arrive.
        let timeout = target.settings.response_timeout;
        match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(result) => finish(received(result), self.config.max_response_size),
            Err(_) => Err(timed_out(timeout)),
        }
    }
}

/// Queues `input` on `target`; the receiver of its final answer.
pub(super) fn submit(
    target: &Arc<ModelVersion>,
    id: &str,
    input: Input,
    stream: Option<PieceSender>,
) -> Result<Reply, Error> {
    let (tx, rx) = oneshot::channel();
    let job = Job {
        id: id.to_string(),
        input,
        enqueued: Instant::now(),
        stream,
        reply: tx,
    };
    match target.submit(job) {
        Ok(()) => {}
        // Unregistered while the request arrived: as if it had not been there.
        Err(SubmitError::Closed) => {
            return Err(LookupError::VersionNotFound {
                model: target.name.clone(),
                version: target.version.clone(),
            }
            .into());
        }
        Err(SubmitError::NoWorker) => {
            return Err(Error::Unavailable(target.no_worker_message()));
        }
        Err(SubmitError::Full) => {
            return Err(Error::Unavailable(format!(
                "{} Its job queue is full (jobQueueSize {}).",
                target.no_worker_message(),
                target.settings.job_queue_size
            )));
        }
    }
    Ok(rx)
}

pub(super) fn received(
    result: Result<Result<Output, PredictError>, oneshot::error::RecvError>,
) -> Result<Output, PredictError> {
    result.unwrap_or_else(|_| {
        Err(PredictError::Unavailable(
            "the worker stopped before answering".into(),
        ))
    })
}

fn timed_out(timeout: Duration) -> Error {
    Error::Unavailable(format!(
        "the request timed out after {} s (responseTimeout)",
        timeout.as_secs()
    ))
}

/// The final answer, checked against `max_response_size` and the handler's limits.
pub(super) fn finish(
    result: Result<Output, PredictError>,
    max_response_size: usize,
) -> Result<Output, Error> {
    match result {
        Ok(Output::Response(resp)) => {
            check_response(&resp, max_response_size)?;
            Ok(Output::Response(resp))
        }
        Ok(Output::Tensors(t)) => {
            let size: usize = t.iter().map(|t| t.data.len()).sum();
            if size > max_response_size {
                return Err(Error::Internal(format!(
                    "the model's outputs take {size} bytes, over max_response_size ({max_response_size} bytes)"
                )));
            }
            Ok(Output::Tensors(t))
        }
        Err(e) => Err(prediction_error(e)),
    }
}

fn check_response(resp: &Response, max_response_size: usize) -> Result<(), Error> {
    if resp.body.len() > max_response_size {
        return Err(Error::Internal(format!(
            "the handler's response of {} bytes exceeds max_response_size ({max_response_size} bytes)",
            resp.body.len(),
        )));
    }
    let headers: usize = resp
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    if headers > MAX_HANDLER_HEADERS {
        return Err(Error::Internal(format!(
            "the handler's response headers take {headers} bytes, over the {MAX_HANDLER_HEADERS} \
             allowed beside max_response_size (which counts the body)"
        )));
    }
    if !(200..=599).contains(&resp.status) {
        return Err(Error::Internal(format!(
            "the handler answered with status {}, which is not a final HTTP status (200-599)",
            resp.status
        )));
    }
    Ok(())
}

/// A failure on a lane: the handler's status, 500 for a crash, 503 for the model,
/// 400 for inputs the forward refused.
fn prediction_error(e: PredictError) -> Error {
    let status = match &e {
        PredictError::Handler { status, .. } if (400..=599).contains(status) => *status,
        PredictError::Handler { .. } | PredictError::Crash(_) => 500,
        PredictError::Model(_) => 503,
        PredictError::Input(_) => 400,
        PredictError::Unavailable(m) => return Error::Unavailable(m.clone()),
    };
    Error::Prediction {
        status,
        message: e.to_string(),
    }
}
