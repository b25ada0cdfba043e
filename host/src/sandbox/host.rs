//! The `host` interface: the model log and custom metrics, within the call's budget.

use super::bindings::host::Level;
use super::state::HostState;

impl super::bindings::types::Host for HostState {}

impl super::bindings::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        if self.budget.take_log_line() {
            crate::sandbox::guest_io::model_log(&self.labels, level, "log", &message);
        }
    }

    fn metric(&mut self, name: String, value: f64, unit: String, labels: Vec<(String, String)>) {
        if self.budget.take_metric() {
            crate::metrics::handler_metric(&self.labels, &name, value, &unit, &labels);
        }
    }
}
