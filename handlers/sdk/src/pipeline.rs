//! Pipelines (feature `pipeline`): components that call models rather than sit around
//! one. A pipeline binds the WIT world `pipeline`: the server hands it the whole request
//! ([`Pipeline::handle`]) and it calls the models its archive declares, as often as it
//! needs, with [`models::infer`]; each call runs on that model's queue, batched with the
//! model's other traffic. A number written in several digits, a detector then a
//! classifier on each crop, an ensemble: the control flow is the pipeline's own code.
//!
//! ```ignore
//! use wasmserve_handler::pipeline::{Pipeline, models};
//! use wasmserve_handler::{Context, Error, Request, Response, Tensor};
//!
//! struct Twice;
//!
//! impl Pipeline for Twice {
//!     fn init(_ctx: &Context) -> Result<Self, String> {
//!         Ok(Twice)
//!     }
//!
//!     fn handle(&self, req: &Request) -> Result<Response, Error> {
//!         let body = req.input()?;
//!         let input = Tensor::from_slice(&[1, body.len() as u64], body)?;
//!         let first = models::infer("encoder", None, &[input])?;
//!         let second = models::infer("decoder", None, &first)?;
//!         Response::json(&second[0].to_f64_vec()?)
//!     }
//! }
//!
//! wasmserve_handler::export_pipeline!(Twice);
//! ```
//!
//! The archive has no model file of its own (`wasmserve archive` without
//! `--serialized-file`) and names what it may call in its `model-config.yaml`:
//! `models: [encoder, decoder]`. Anything else is refused inside the guest (403).

use crate::{Context, Error, Request, Response};

/// A pipeline: one request in, one response out, with model calls in between.
///
/// As for a [`Handler`](crate#a-complete-handler), one value is made per instance by
/// [`Pipeline::init`] and an instance never sees two requests at once.
pub trait Pipeline: Sized + 'static {
    /// Called once, before the first request; an error fails the model's load.
    fn init(ctx: &Context) -> Result<Self, String>;

    /// Answers one request; an error fails this request alone, with its status.
    fn handle(&self, req: &Request) -> Result<Response, Error>;
}

/// The models a pipeline calls.
pub mod models {
    use crate::{Error, Tensor};

    /// Runs `model`'s forward (version `version`, or its default version with `None`)
    /// on `inputs`, each with a leading batch dimension, and returns its outputs.
    ///
    /// The call waits on the model's queue like any request for it, within this
    /// request's time limit. Errors carry their status: 403 for a model the archive
    /// does not declare, 404 for one not served, 400 for inputs the model refuses, 429
    /// past the calls one request may make, 503 when the model is busy or the time ran
    /// out.
    pub fn infer(
        model: &str,
        version: Option<&str>,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>, Error> {
        crate::bindings::wasmserve::handler::models::infer(model, version.unwrap_or(""), inputs)
    }
}

/// Exports a [`Pipeline`] implementation as the component's `pipeline` world.
///
/// ```ignore
/// wasmserve_handler::export_pipeline!(MyPipeline);
/// ```
#[macro_export]
macro_rules! export_pipeline {
    ($pipeline:ty) => {
        const _: () = {
            struct WasmserveExport;

            ::std::thread_local! {
                static STATE: ::std::cell::OnceCell<$pipeline> = const { ::std::cell::OnceCell::new() };
            }

            impl $crate::bindings::Guest for WasmserveExport {
                fn init(ctx: $crate::Context) -> Result<(), String> {
                    let pipeline = <$pipeline as $crate::pipeline::Pipeline>::init(&ctx)?;
                    STATE.with(|state| {
                        state.set(pipeline).map_err(|_| "init called twice".to_string())
                    })
                }

                fn handle(req: $crate::Request) -> Result<$crate::Response, $crate::Error> {
                    STATE.with(|state| match state.get() {
                        Some(p) => $crate::pipeline::Pipeline::handle(p, &req),
                        None => Err($crate::Error::internal("pipeline called before init")),
                    })
                }
            }

            $crate::bindings::export!(WasmserveExport with_types_in $crate::bindings);
        };
    };
}
