//! # wasmserve-handler: the Rust SDK for wasmserve request handlers
//!
//! A wasmserve handler is a WebAssembly component that turns one HTTP request into the
//! model's input tensors ([`Handler::preprocess`]) and the model's output tensors back
//! into one HTTP response ([`Handler::postprocess`]). The server runs the TorchScript
//! model natively in between, batching requests when the model is configured to.
//!
//! This crate is what a handler depends on instead of calling `wit-bindgen` by hand. It
//! owns the bindings to the `wasmserve:handler` WIT world (`wit/handler.wit`) and adds:
//!
//! - typed tensors: [`Tensor::from_slice`], [`Tensor::to_vec`], with dtype and shape checks;
//! - request helpers for TorchServe's input conventions: [`Request::input`] (the `data`
//!   or `body` field, or the raw body), [`Request::input_bytes`] (raw or base64, also
//!   inside a JSON body), [`Request::input_text`], [`Request::input_json`];
//! - responses and errors: [`Response::json`], [`Error::bad_request`];
//! - logging and custom metrics through the host: [`log`], [`metric`];
//! - answers in pieces: [`send_intermediate`] (chunked HTTP, gRPC streams);
//! - the archive's extra files: [`model_file`];
//! - image transforms as torchvision does them ([`vision`], feature `vision`, default on);
//! - output helpers: [`output::softmax`], [`output::top_k`], [`output::LabelMap`];
//! - with feature `pipeline`: components that call models instead of being called
//!   around one ([`pipeline`]: `Pipeline`, `export_pipeline!`, `models::infer`).
//!
//! ## A complete handler
//!
//! ```no_run
//! use wasmserve_handler::{Context, Error, Handler, Request, Response, Tensor};
//!
//! /// Sends the request body to the model as a uint8 tensor `[1, len]` and answers with
//! /// the model's first output as JSON.
//! struct Bytes;
//!
//! impl Handler for Bytes {
//!     fn init(_ctx: &Context) -> Result<Self, String> {
//!         Ok(Bytes)
//!     }
//!
//!     fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
//!         let body = req.input()?;
//!         Ok(vec![Tensor::from_slice(&[1, body.len() as u64], body)?])
//!     }
//!
//!     fn postprocess(&self, _req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
//!         let first = outputs.first().ok_or_else(|| Error::internal("model returned nothing"))?;
//!         let values: Vec<f32> = first.to_vec()?;
//!         Response::json(&values)
//!     }
//! }
//!
//! wasmserve_handler::export_handler!(Bytes);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type `cdylib`):
//! the `.wasm` file is a component that `wasmserve archive --handler` accepts.
//!
//! ## The sandbox
//!
//! A handler sees the archive's files, read-only, under `/model`, and nothing else: no
//! network, no environment variables, no other files. Its memory and the time of each
//! call are bounded by the server; a panic fails the current request only.

pub mod output;
#[cfg(feature = "pipeline")]
pub mod pipeline;
mod request;
pub mod resample;
pub mod tensor;
#[cfg(feature = "vision")]
pub mod vision;

/// The generated bindings to the `wasmserve:handler` world. Handlers normally use the
/// re-exports at the crate root and [`export_handler!`] instead.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    #[cfg(not(feature = "pipeline"))]
    wit_bindgen::generate!({
        world: "handler",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "wasmserve_handler::bindings",
        generate_all,
    });
    #[cfg(feature = "pipeline")]
    wit_bindgen::generate!({
        world: "pipeline",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "wasmserve_handler::bindings",
        generate_all,
    });
}

pub use bindings::wasmserve::handler::host::Level;
pub use bindings::wasmserve::handler::types::{
    Context, Dtype, Error, Part, Request, Response, Tensor,
};
pub use request::decode_base64;
pub use tensor::{Element, dtype_size, find_output};

/// A request handler: the code between an HTTP request and the model.
///
/// One value of the implementing type is made per handler instance by [`Handler::init`];
/// the server makes one instance per worker, so a handler never sees two calls at once.
#[cfg(not(feature = "pipeline"))]
pub trait Handler: Sized + 'static {
    /// Called once, before the first request, with the model's name, version, manifest
    /// and the handler's own keys from `model-config.yaml`. An error fails the model's load.
    fn init(ctx: &Context) -> Result<Self, String>;

    /// Turns one request into the model's inputs, each with a leading batch dimension of
    /// 1. An error fails this request alone, with its status.
    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error>;

    /// Turns this request's slice of the model's outputs into the response.
    fn postprocess(&self, req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error>;
}

/// Exports a [`Handler`] implementation as the component's `handler` world.
///
/// ```ignore
/// wasmserve_handler::export_handler!(MyHandler);
/// ```
#[cfg(not(feature = "pipeline"))]
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            struct WasmserveExport;

            ::std::thread_local! {
                static STATE: ::std::cell::OnceCell<$handler> = const { ::std::cell::OnceCell::new() };
            }

            fn with_handler<R>(
                f: impl FnOnce(&$handler) -> Result<R, $crate::Error>,
            ) -> Result<R, $crate::Error> {
                STATE.with(|state| match state.get() {
                    Some(handler) => f(handler),
                    None => Err($crate::Error::internal("handler called before init")),
                })
            }

            impl $crate::bindings::Guest for WasmserveExport {
                fn init(ctx: $crate::Context) -> Result<(), String> {
                    let handler = <$handler as $crate::Handler>::init(&ctx)?;
                    STATE.with(|state| {
                        state.set(handler).map_err(|_| "init called twice".to_string())
                    })
                }

                fn preprocess(req: $crate::Request) -> Result<Vec<$crate::Tensor>, $crate::Error> {
                    with_handler(|h| $crate::Handler::preprocess(h, &req))
                }

                fn postprocess(
                    req: $crate::Request,
                    outputs: Vec<$crate::Tensor>,
                ) -> Result<$crate::Response, $crate::Error> {
                    with_handler(|h| $crate::Handler::postprocess(h, &req, outputs))
                }
            }

            $crate::bindings::export!(WasmserveExport with_types_in $crate::bindings);
        };
    };
}

/// With feature `pipeline` the crate binds the `pipeline` world, which has no
/// `preprocess`/`postprocess` to export: say so where the macro is used.
#[cfg(feature = "pipeline")]
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        ::std::compile_error!(
            "wasmserve-handler is built with feature `pipeline` (the `pipeline` world), so \
             it cannot export a Handler. Another crate in this cargo build enables the \
             feature and cargo unifies features: build handlers and pipelines in separate \
             cargo invocations (or workspaces)."
        );
    };
}

/// Without feature `pipeline` the crate binds the `handler` world, which has no
/// `handle` to export: say so where the macro is used.
#[cfg(not(feature = "pipeline"))]
#[macro_export]
macro_rules! export_pipeline {
    ($pipeline:ty) => {
        ::std::compile_error!(
            "export_pipeline! needs wasmserve-handler's feature `pipeline`: \
             wasmserve-handler = { ..., features = [\"pipeline\"] } in Cargo.toml"
        );
    };
}

/// Writes a line to the model log (tagged by the host with the model and request id).
pub fn log(level: Level, message: &str) {
    bindings::wasmserve::handler::host::log(level, message);
}

/// Records a custom metric; the host adds the model's name and version as labels.
pub fn metric(name: &str, value: f64, unit: &str, labels: &[(&str, &str)]) {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    bindings::wasmserve::handler::host::metric(name, value, unit, &labels);
}

/// Sends `response` to the client of the current request now, before the response
/// [`Handler::postprocess`] returns (always the last piece): TorchServe's
/// `send_intermediate_predict_response`. Over HTTP the first piece's status and headers
/// start a chunked response and each piece's body is one chunk; over gRPC each piece is
/// one stream message. A caller that asked for one answer (KServe REST, unary gRPC) gets
/// only the final response (pieces for it are dropped, and this returns `Ok`).
///
/// Waits while the client is a few pieces behind, within the call's time limit. An
/// `Err` means the piece did not go out and none will: the client went away, the wait
/// ran out, or the response is invalid. Stop and return then (`?` into an
/// [`Error::internal`] does).
///
/// ```no_run
/// # use wasmserve_handler::{Error, Response};
/// # fn f(labels: &[String]) -> Result<Response, Error> {
/// for label in labels {
///     let piece = Response::json(&serde_json::json!({ "label": label }))?;
///     wasmserve_handler::send_intermediate(&piece).map_err(Error::internal)?;
/// }
/// Response::json(&serde_json::json!({ "done": labels.len() }))
/// # }
/// ```
pub fn send_intermediate(response: &Response) -> Result<(), String> {
    bindings::wasmserve::handler::streaming::send_intermediate(response)
}

/// Reads a file the archive carries (an `--extra-files` entry, `model-config.yaml`, …).
/// Returns `None` when the archive has no such file.
pub fn model_file(name: &str) -> Option<Vec<u8>> {
    if name.contains("..") {
        return None;
    }
    std::fs::read(std::path::Path::new("/model").join(name.trim_start_matches('/'))).ok()
}

impl Context {
    /// A handler key from `model-config.yaml` (the keys the server does not use itself).
    pub fn config_value(&self, key: &str) -> Option<serde_json::Value> {
        match serde_json::from_str::<serde_json::Value>(&self.config) {
            Ok(serde_json::Value::Object(mut map)) => map.remove(key),
            _ => None,
        }
    }

    /// A positive whole-number key, `default` when absent; the error names the key.
    pub fn config_positive(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.config_value(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    format!("model-config.yaml: `{key}` must be a positive whole number, got {v}")
                }),
        }
    }

    /// A number key, `default` when absent; the error names the key.
    pub fn config_f64(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.config_value(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("model-config.yaml: `{key}` must be a number, got {v}")),
        }
    }

    /// A string key, `None` when absent; the error names the key.
    pub fn config_str(&self, key: &str) -> Result<Option<String>, String> {
        match self.config_value(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(format!(
                "model-config.yaml: `{key}` must be a string, got {v}"
            )),
        }
    }

    /// A boolean key, `default` when absent; the error names the key.
    pub fn config_bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.config_value(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                format!("model-config.yaml: `{key}` must be true or false, got {v}")
            }),
        }
    }
}
