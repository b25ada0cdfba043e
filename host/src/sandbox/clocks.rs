//! The sandbox's monotonic clock: WASI's coarse clock, with no sleep past the current
//! call's deadline.

use std::time::{Duration, Instant};

/// `wasi:clocks/monotonic-clock` as the sandbox has it: the coarse clock of the
/// instance's `WasiCtx`, and no sleeping past the current call's deadline.
pub(super) struct SandboxClocks;

impl wasmtime::component::HasData for SandboxClocks {
    type Data<'a> = SandboxClocksView<'a>;
}

pub(super) struct SandboxClocksView<'a> {
    pub(super) inner: wasmtime_wasi::clocks::WasiClocksCtxView<'a>,
    pub(super) deadline: Option<Instant>,
}

impl SandboxClocksView<'_> {
    /// Allows a sleep of `nanos` only if it ends before the call's deadline: a guest
    /// that would sleep past it fails at once (a host call cannot be interrupted).
    fn check(&self, nanos: u64) -> wasmtime::Result<u64> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if Duration::from_nanos(nanos) > left {
                return Err(wasmtime::Error::msg(format!(
                    "it tried to sleep {:.3} s with {:.3} s left of its time limit (responseTimeout)",
                    nanos as f64 / 1e9,
                    left.as_secs_f64()
                )));
            }
        }
        Ok(nanos)
    }
}

pub(super) use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

impl monotonic_clock::Host for SandboxClocksView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        self.inner.now()
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        self.inner.resolution()
    }

    fn subscribe_instant(
        &mut self,
        when: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        let now = self.inner.now()?;
        let nanos = self.check(when.saturating_sub(now))?;
        self.inner.subscribe_duration(nanos)
    }

    fn subscribe_duration(
        &mut self,
        nanos: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        let nanos = self.check(nanos)?;
        self.inner.subscribe_duration(nanos)
    }
}
