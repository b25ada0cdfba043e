//! The sandbox: compiling, checking and running handler components with wasmtime.
//!
//! One [`HandlerRuntime`] (one wasmtime `Engine` and `Linker`) serves the whole
//! process. A [`HandlerComponent`] is one archive's compiled component, of one of the
//! two worlds of `wit/handler.wit` ([`World`]): a `handler` (preprocess → the model's
//! forward → postprocess) or a `pipeline` (`handle`, calling models itself). It is
//! linked once and instantiated per worker lane as a [`HandlerInstance`], each with its
//! own `Store`.
//!
//! The sandbox of an instance: WASI preview 2 with no environment, no arguments, no
//! network, no stdin; the archive's extracted files read-only under `/model`; linear
//! memory capped by [`Limits::max_memory`]; each call bounded in time by epoch
//! interruption, and every host call that waits (a sleep, a full stream, a model call)
//! bounded by the same deadline. A trap poisons an instance: the caller drops it and
//! instantiates afresh.
//!
//! One file per concern:
//!
//! - `bindings.rs`: the generated bindings of both worlds, sharing their types;
//! - `engine.rs`: the engine, the linker, [`Limits`], [`RuntimeError`], compiling;
//! - `epoch.rs`: the epoch ticker bounding calls in time, asleep while no call runs;
//! - `cache.rs`: the on-disk cache of compiled components;
//! - `instance.rs`: [`HandlerComponent`], [`Sandbox`], [`HandlerInstance`] and its calls;
//! - `state.rs`: what an instance's store holds ([`HostState`]);
//! - one file per host interface: `host.rs` (log, metrics), `image.rs`, `streaming.rs`,
//!   `models.rs` (the pipeline's model calls, through [`ModelCaller`]), `clocks.rs`
//!   (the monotonic clock cut at the deadline);
//! - [`guest_io`]: what a guest may log and record per call, its stdout and stderr, and
//!   the coarse clocks;
//! - [`adapt`]: wasm32-wasip1 core modules made into components.

pub mod adapt;
mod bindings;
mod cache;
mod clocks;
mod engine;
mod epoch;
pub mod guest_io;
mod host;
mod image;
mod instance;
mod models;
mod state;
mod streaming;

pub use bindings::types::{Context, Dtype, Error, Part, Request, Response, Tensor};
pub use engine::{DEFAULT_MAX_INSTANCES, HandlerRuntime, Limits, RuntimeError, is_component};
pub use instance::{HandlerComponent, HandlerInstance, Sandbox, World};
pub use models::{MAX_MODEL_CALLS_PER_CALL, ModelCaller, Models};
pub use state::HostState;

/// A handler's own error for one request (the WIT `error` record).
pub type HandlerError = Error;

/// The files of the WIT package (`wit/`), as (file name, text): what a handler is
/// built against, written out by `wasmserve handler new` and the Python build.
pub const WIT_FILES: &[(&str, &str)] = &[("handler.wit", include_str!("../../../wit/handler.wit"))];
