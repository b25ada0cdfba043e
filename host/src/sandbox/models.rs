//! The `models` interface of the pipeline world: a pipeline's calls to the server's
//! models. The sandbox owns the policy (only the declared models, at most
//! [`MAX_MODEL_CALLS_PER_CALL`] calls per request, never past the call's deadline);
//! reaching a model is the core's, through the [`ModelCaller`] trait, so that the
//! sandbox does not depend on the registry.

use std::sync::Arc;
use std::time::Instant;

use super::bindings::models;
use super::bindings::types::{Error, Tensor};
use super::state::HostState;

/// Model calls one `handle` may make: a pipeline in a loop fails its request at once
/// instead of keeping the models busy until its time limit.
pub const MAX_MODEL_CALLS_PER_CALL: u32 = 256;

/// How a pipeline reaches a model's forward (implemented by `core::pipeline`).
pub trait ModelCaller: Send + Sync + std::fmt::Debug {
    /// Runs the forward of `model` (`version`: `None` for the default one) on `inputs`
    /// through the model's queue, waiting at most until `deadline`. `caller` is the
    /// pipeline's name and `request_id` the id of the request it is answering: the call
    /// runs under that id, so that the model's log lines join the pipeline's.
    fn infer(
        &self,
        caller: &str,
        request_id: &str,
        model: &str,
        version: Option<&str>,
        inputs: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<Vec<Tensor>, Error>;
}

/// What one pipeline may call.
#[derive(Clone, Debug)]
pub struct Models {
    /// The models its archive declares (`models:` in model-config.yaml).
    pub declared: Vec<String>,
    pub caller: Arc<dyn ModelCaller>,
}

fn refuse(status: u16, message: String) -> Error {
    Error { status, message }
}

impl models::Host for HostState {
    fn infer(
        &mut self,
        model: String,
        version: String,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, Error> {
        let Some(models) = &self.models else {
            return Err(refuse(
                403,
                "this component may call no models: only a pipeline whose model-config.yaml \
                 declares them (`models: [name, …]`) may"
                    .into(),
            ));
        };
        if !models.declared.contains(&model) {
            return Err(refuse(
                403,
                format!(
                    "model {model:?} is not one this pipeline declares ({}); add it to \
                     `models:` in the pipeline's model-config.yaml",
                    if models.declared.is_empty() {
                        "it declares none".to_string()
                    } else {
                        models.declared.join(", ")
                    }
                ),
            ));
        }
        self.model_calls += 1;
        if self.model_calls > MAX_MODEL_CALLS_PER_CALL {
            return Err(refuse(
                429,
                format!(
                    "the pipeline called models more than {MAX_MODEL_CALLS_PER_CALL} times for one request"
                ),
            ));
        }
        let deadline = self.call_deadline.unwrap_or_else(Instant::now);
        let version = (!version.is_empty()).then_some(version.as_str());
        models.caller.infer(
            &self.labels.model_name,
            &self.request_id,
            &model,
            version,
            inputs,
            deadline,
        )
    }
}
