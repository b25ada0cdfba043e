//! The one way into a model: queue the input on a version, wait for its answer within
//! the version's `responseTimeout`, check the answer's size, count it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Core, Error, Input, Output};
use crate::registry::{LookupError, ModelVersion};
use crate::runtime::Response;
use crate::worker::{Job, PredictError, SubmitError};

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
        requests: Vec<crate::runtime::Request>,
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

    async fn predict_on(
        &self,
        target: &ModelVersion,
        id: &str,
        input: Input,
    ) -> Result<Output, Error> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            id: id.to_string(),
            input,
            enqueued: Instant::now(),
            reply: tx,
        };
        match target.submit(job) {
            Ok(()) => {}
            // Unregistered while the request arrived: as if it had not been there.
            Err(SubmitError::Closed(_)) => {
                return Err(LookupError::VersionNotFound {
                    model: target.name.clone(),
                    version: target.version.clone(),
                }
                .into());
            }
            Err(SubmitError::NoWorker(_)) => {
                return Err(Error::Unavailable(target.no_worker_message()));
            }
            Err(SubmitError::Full(_)) => {
                return Err(Error::Unavailable(format!(
                    "{} Its job queue is full (jobQueueSize {}).",
                    target.no_worker_message(),
                    target.settings.job_queue_size
                )));
            }
        }
        // The lane bounds each handler call by the same timeout and answers first; the
        // grace second lets its message arrive.
        let timeout = target.settings.response_timeout;
        let result = match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                return Err(Error::Unavailable(
                    "the worker stopped before answering".into(),
                ));
            }
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "the request timed out after {} s (responseTimeout)",
                    timeout.as_secs()
                )));
            }
        };
        match result {
            Ok(Output::Response(resp)) => {
                self.check_response(&resp)?;
                Ok(Output::Response(resp))
            }
            Ok(Output::Tensors(t)) => {
                let size: usize = t.iter().map(|t| t.data.len()).sum();
                if size > self.config.max_response_size {
                    return Err(Error::Internal(format!(
                        "the model's outputs take {size} bytes, over max_response_size ({} bytes)",
                        self.config.max_response_size
                    )));
                }
                Ok(Output::Tensors(t))
            }
            Err(e) => Err(prediction_error(e)),
        }
    }

    fn check_response(&self, resp: &Response) -> Result<(), Error> {
        if resp.body.len() > self.config.max_response_size {
            return Err(Error::Internal(format!(
                "the handler's response of {} bytes exceeds max_response_size ({} bytes)",
                resp.body.len(),
                self.config.max_response_size
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
