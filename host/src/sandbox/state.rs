//! What a handler instance's store holds: its WASI context, its limits, the labels the
//! host puts on what it logs, and the current call's deadline, stream and model access.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::guest_io::{CallBudget, ModelLabels};
use super::models::Models;
use crate::worker::stream::PieceSender;

/// The per-store state a handler instance sees through its imports.
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    /// The model and version the instance serves: the labels the host puts on its log
    /// lines and metrics (a guest cannot override them).
    pub(super) labels: Arc<ModelLabels>,
    /// What the current call may still log and record (reset at every call).
    pub(super) budget: Arc<CallBudget>,
    /// When the current call must end: sleeps inside the guest are cut short at it, so
    /// that a guest waiting in a host call cannot outlive its time limit.
    pub(super) call_deadline: Option<Instant>,
    /// Where the current request's intermediate responses go (`None`: its caller wants
    /// one answer, and they are dropped).
    pub(super) stream: Option<PieceSender>,
    /// The models a pipeline may call (`None`: none, as for every `handler`).
    pub(super) models: Option<Models>,
    /// Model calls the current call made (reset at every call).
    pub(super) model_calls: u32,
    /// The id of the request the current `handle` answers, which its model calls carry.
    pub(super) request_id: String,
    /// How the `image` interface decodes (`fastImageDecode`).
    pub(super) image_mode: crate::imaging::Mode,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
