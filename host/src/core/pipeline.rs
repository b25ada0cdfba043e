//! Pipelines calling models: the core's side of the sandbox's `models.infer`
//! ([`crate::sandbox::ModelCaller`]). A call is a tensor request on the target's queue,
//! exactly as KServe v2 sends one (it batches with the target's other traffic, within
//! its queue size, counted in its metrics), waited for on the pipeline's lane thread
//! until the earlier of the pipeline's deadline and the target's `responseTimeout`.
//!
//! Why this cannot deadlock: a pipeline waits on its own lane, never on the target's;
//! the target's lanes run a forward, which waits on nothing; and a pipeline may not call
//! another pipeline (its `handle` takes a request, not tensors), so every chain of calls
//! is one deep and no lane ever waits on a lane of its own kind.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::{Error, Input, Output};
use crate::registry::Registry;
use crate::sandbox::{HandlerError, ModelCaller, Tensor};

/// The registry's models, as pipelines reach them.
#[derive(Debug)]
pub struct CoreModels {
    pub(super) registry: Weak<Registry>,
    pub(super) max_response_size: usize,
}

impl ModelCaller for CoreModels {
    fn infer(
        &self,
        caller: &str,
        request_id: &str,
        model: &str,
        version: Option<&str>,
        inputs: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<Vec<Tensor>, HandlerError> {
        let fail = |e: Error| HandlerError {
            status: e.status(),
            message: format!("{model}: {e}"),
        };
        let registry = self
            .registry
            .upgrade()
            .ok_or_else(|| fail(Error::Unavailable("the server is stopping".into())))?;
        let target = registry.get(model, version).map_err(|e| fail(e.into()))?;
        if target.is_pipeline() {
            return Err(fail(Error::invalid(
                "it is a pipeline: models.infer runs a model's TorchScript forward, and a \
                 pipeline has none (pipelines do not call pipelines)",
            )));
        }
        let started = Instant::now();
        tracing::debug!(request_id, pipeline = caller, model, "models.infer");
        let reply = super::predict::submit(&target, request_id, Input::Tensors(inputs), None)
            .map_err(fail)?;
        let timeout = target.settings.response_timeout;
        let until = deadline.min(started + timeout);
        let result = wait_until(reply, until);
        crate::metrics::global().inference(&target.name, &target.version, started.elapsed());
        match result {
            None => Err(fail(Error::Unavailable(format!(
                "no answer within the pipeline's time limit ({:.1} s left when it called)",
                until.saturating_duration_since(started).as_secs_f64()
            )))),
            Some(result) => {
                match super::predict::finish(
                    super::predict::received(result),
                    self.max_response_size,
                )
                .map_err(fail)?
                {
                    Output::Tensors(t) => Ok(t),
                    Output::Response(_) => Err(fail(Error::internal(
                        "the model answered a response to tensors",
                    ))),
                }
            }
        }
    }
}

/// Wakes the thread that waits.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this (non-async) thread until it is ready or `deadline` passes.
/// Dropping the future at the deadline cancels the job (a lane skips a job whose caller
/// went away).
fn wait_until<F: Future>(future: F, deadline: Instant) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waits_for_an_answer_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = tx.send(7);
        });
        let got = wait_until(rx, Instant::now() + Duration::from_secs(5));
        assert_eq!(got.map(Result::ok), Some(Some(7)));
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let started = Instant::now();
        assert!(wait_until(rx, started + Duration::from_millis(30)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
