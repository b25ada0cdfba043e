//! What a handler instance may say and see besides its calls: its log lines, stdout
//! and stderr (into the model log), its share of the log and metrics per call, and the
//! coarse clocks of the sandbox.
//!
//! A guest cannot flood the host: each call may write at most
//! [`MAX_LOG_LINES_PER_CALL`] lines (host `log`, stdout and stderr together) and record
//! at most [`MAX_METRICS_PER_CALL`] metric values; the rest is dropped and counted in
//! `wasmserve_handler_dropped_total`. The model name and version on every line and
//! series come from the host, never from the guest.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Lines a single call may add to the model log (host `log`, stdout, stderr together).
pub const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Metric values a single call may record.
pub const MAX_METRICS_PER_CALL: u32 = 100;
/// Longest line kept from stdout or stderr; the rest of the line is cut.
const MAX_LINE: usize = 8 * 1024;

/// The model and version an instance serves: the labels the host adds.
#[derive(Debug)]
pub struct ModelLabels {
    pub model_name: String,
    pub model_version: String,
}

/// What the current call may still log and record; reset by the runtime at each call.
#[derive(Debug, Default)]
pub struct CallBudget {
    log_lines: AtomicU32,
    metrics: AtomicU32,
    dropped_lines: AtomicU32,
    dropped_metrics: AtomicU32,
}

impl CallBudget {
    /// Starts a call with a full budget.
    pub fn reset(&self) {
        self.log_lines.store(0, Ordering::Relaxed);
        self.metrics.store(0, Ordering::Relaxed);
    }

    /// Whether one more line may be logged; counts it as dropped otherwise.
    pub fn take_log_line(&self) -> bool {
        if self.log_lines.fetch_add(1, Ordering::Relaxed) < MAX_LOG_LINES_PER_CALL {
            true
        } else {
            self.dropped_lines.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Whether one more metric value may be recorded; counts it as dropped otherwise.
    pub fn take_metric(&self) -> bool {
        if self.metrics.fetch_add(1, Ordering::Relaxed) < MAX_METRICS_PER_CALL {
            true
        } else {
            self.dropped_metrics.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Ends a call: reports what it dropped (one warning, and the dropped counter).
    pub fn finish(&self, labels: &ModelLabels) {
        let lines = self.dropped_lines.swap(0, Ordering::Relaxed);
        let metrics = self.dropped_metrics.swap(0, Ordering::Relaxed);
        for (kind, n, cap) in [
            ("log", lines, MAX_LOG_LINES_PER_CALL),
            ("metric", metrics, MAX_METRICS_PER_CALL),
        ] {
            if n > 0 {
                crate::metrics::handler_dropped(labels, kind, n);
                tracing::warn!(
                    target: "wasmserve::model",
                    model_name = %labels.model_name,
                    model_version = %labels.model_version,
                    "dropped {n} {kind} record(s) of one handler call (at most {cap} per call)"
                );
            }
        }
    }
}

/// Writes one line of a guest (`source`: `log`, `stdout` or `stderr`) to the model log.
pub fn model_log(labels: &ModelLabels, level: tracing::Level, source: &str, line: &str) {
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(
                target: "wasmserve::model",
                $lvl,
                model_name = %labels.model_name,
                model_version = %labels.model_version,
                source,
                "{line}"
            )
        };
    }
    match level {
        tracing::Level::TRACE => at!(tracing::Level::TRACE),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        _ => at!(tracing::Level::ERROR),
    }
}

/// A guest's stdout or stderr: complete lines go to the model log (stdout at info,
/// stderr at warn), within the call's budget.
///
/// ```
/// # use std::sync::Arc;
/// # use wasmserve::sandbox::guest_io::{CallBudget, GuestOutput, ModelLabels};
/// let labels = Arc::new(ModelLabels { model_name: "m".into(), model_version: "1.0".into() });
/// let stdout = GuestOutput::new("stdout", labels, Arc::new(CallBudget::default()));
/// let _ctx = wasmtime_wasi::WasiCtx::builder().stdout(stdout).build();
/// ```
#[derive(Clone)]
pub struct GuestOutput {
    source: &'static str,
    labels: Arc<ModelLabels>,
    budget: Arc<CallBudget>,
    /// The line not yet ended, shared by every stream handle of this output.
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    pub fn new(source: &'static str, labels: Arc<ModelLabels>, budget: Arc<CallBudget>) -> Self {
        GuestOutput {
            source,
            labels,
            budget,
            pending: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(pos);
            bytes = &rest[1..];
            if pending.len() < MAX_LINE {
                let room = MAX_LINE - pending.len();
                pending.extend_from_slice(&line[..line.len().min(room)]);
            }
            self.emit(&pending);
            pending.clear();
        }
        if pending.len() < MAX_LINE {
            let room = MAX_LINE - pending.len();
            pending.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.budget.take_log_line() {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        let level = if self.source == "stderr" {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        };
        model_log(&self.labels, level, self.source, text);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The resolution of the sandbox's clocks: fine enough to time a request, too coarse
/// to time cache effects.
pub const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// `wasi:clocks/wall-clock` rounded down to [`CLOCK_RESOLUTION`].
pub struct CoarseWallClock;

impl wasmtime_wasi::HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        CLOCK_RESOLUTION
    }

    fn now(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        round_down(now)
    }
}

/// `wasi:clocks/monotonic-clock` rounded down to [`CLOCK_RESOLUTION`], counted from the
/// instance's creation.
pub struct CoarseMonotonicClock {
    start: Instant,
}

impl Default for CoarseMonotonicClock {
    fn default() -> Self {
        CoarseMonotonicClock {
            start: Instant::now(),
        }
    }
}

impl wasmtime_wasi::HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        CLOCK_RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        round_down(self.start.elapsed()).as_nanos() as u64
    }
}

fn round_down(d: Duration) -> Duration {
    let step = CLOCK_RESOLUTION.as_nanos();
    Duration::from_nanos((d.as_nanos() / step * step) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_coarse() {
        use wasmtime_wasi::{HostMonotonicClock, HostWallClock};
        assert_eq!(CoarseWallClock.now().subsec_nanos() % 1_000_000, 0);
        let mono = CoarseMonotonicClock::default();
        std::thread::sleep(Duration::from_micros(1500));
        assert_eq!(mono.now() % 1_000_000, 0);
        assert!(mono.now() >= 1_000_000);
    }

    #[test]
    fn output_is_split_into_lines_within_the_budget() {
        let labels = Arc::new(ModelLabels {
            model_name: "m".into(),
            model_version: "1".into(),
        });
        let budget = Arc::new(CallBudget::default());
        let out = GuestOutput::new("stdout", labels.clone(), budget.clone());
        out.write_bytes(b"a\nb");
        assert_eq!(budget.log_lines.load(Ordering::Relaxed), 1);
        out.write_bytes(b"c\n");
        assert_eq!(budget.log_lines.load(Ordering::Relaxed), 2);
        for _ in 0..1000 {
            out.write_bytes(b"x\n");
        }
        assert_eq!(
            budget.dropped_lines.load(Ordering::Relaxed),
            1002 - MAX_LOG_LINES_PER_CALL
        );
        budget.finish(&labels);
        assert_eq!(budget.dropped_lines.load(Ordering::Relaxed), 0);
    }
}
