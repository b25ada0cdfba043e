//! wasmserve: a TorchServe-compatible model server. TorchScript models run natively in
//! libtorch; each model's request handler is a sandboxed WebAssembly component.
//!
//! The binary (`main.rs`) is the command line; this library is the server, one module
//! per concern:
//!
//! - [`archive`]: the `.mar` format, writing archives and extracting them safely;
//! - [`sandbox`]: compiling, checking and running handler components of both worlds
//!   (wasmtime), one file per host interface;
//! - [`slots`]: the server-wide budget of handler instances;
//! - [`metrics`]: the metrics the metrics API exposes (prometheus-client);
//! - [`logging`]: the console log and the log files (access, server, model);
//! - [`builtin`]: the handler components embedded in the binary;
//! - [`model`]: TorchScript models through tch, on the CPU or a GPU;
//! - [`nvml`]: GPU readings from the driver (metrics, `describe`), where there is one;
//! - [`schema`]: a TorchScript module's `forward` signature, read at load;
//! - [`worker`]: worker lanes, batching, preprocess → forward → postprocess;
//! - [`registry`]: the served models and their versions;
//! - [`download`]: registering from `http(s)://` URLs within `allowed_urls`;
//! - [`core`]: the protocol-neutral service every API goes through (predict, the
//!   lifecycle, status, one error type);
//! - [`frontend`]: the protocols over it: TorchServe's REST APIs, KServe v2 and v1,
//!   metrics;
//! - [`http`]: what every HTTP API shares (listeners, authorization, bodies, access log);
//! - [`config`]: `config.properties` and `model-config.yaml`;
//! - [`server`], [`daemon`]: running in the foreground, starting and stopping in the
//!   background;
//! - [`snapshot`]: config snapshots and restoring them;
//! - [`fsutil`]: reading user-named files (regular files only, never blocking);
//! - [`scaffold`]: `wasmserve handler new`.

pub mod archive;
pub mod builtin;
pub mod config;
pub mod core;
pub mod daemon;
pub mod download;
pub mod frontend;
pub mod fsutil;
pub mod http;
pub mod imaging;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod nvml;
pub mod registry;
pub mod sandbox;
pub mod scaffold;
pub mod schema;
pub mod server;
pub mod slots;
pub mod snapshot;
pub mod worker;
