//! The generated bindings of the package `wasmserve:handler` (`wit/handler.wit`): its
//! two worlds side by side, `handler` and `pipeline`, sharing one set of types and of
//! host interfaces (`with:`), so that one host implementation serves both.

#![allow(clippy::too_many_arguments)]

/// The `handler` world: `init`, `preprocess`, `postprocess`.
pub mod handler {
    wasmtime::component::bindgen!({
        world: "handler",
        path: "../wit",
    });
}

/// The `pipeline` world: `init`, `handle`, and the `models` import.
pub mod pipeline {
    wasmtime::component::bindgen!({
        world: "pipeline",
        path: "../wit",
        with: {
            "wasmserve:handler/types": crate::sandbox::bindings::handler::wasmserve::handler::types,
            "wasmserve:handler/host": crate::sandbox::bindings::handler::wasmserve::handler::host,
            "wasmserve:handler/image": crate::sandbox::bindings::handler::wasmserve::handler::image,
            "wasmserve:handler/streaming": crate::sandbox::bindings::handler::wasmserve::handler::streaming,
        },
    });
}

pub use handler::wasmserve::handler::{host, image, streaming, types};
pub use handler::{Handler, HandlerPre};
pub use pipeline::wasmserve::handler::models;
pub use pipeline::{Pipeline, PipelinePre};
