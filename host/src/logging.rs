//! The logs, with `tracing`: a human-readable console log on stderr, and under the log
//! folder (`--log-dir`, default `./logs`) TorchServe's three files, rotated daily
//! (`tracing-appender`, the last 14 days kept):
//!
//! - `access_log.YYYY-MM-DD.log`: one line per request to any API:
//!   `TIME CLIENT "METHOD PATH HTTP/VERSION" STATUS LATENCYus request_id=ID`;
//! - `model_log.YYYY-MM-DD.log`: what handlers say (host `log`, stdout, stderr), each
//!   line with `model_name`, `model_version`, `source` and, inside a request, its
//!   `request_id`;
//! - `ts_log.YYYY-MM-DD.log`: the server's own log.
//!
//! Lines about a request are logged inside a `request{request_id=…}` span, so every such
//! line carries the request's `x-request-id`. The level comes from `WASMSERVE_LOG`
//! (`tracing_subscriber::EnvFilter` syntax, default `info`) for the console, the server
//! and the model logs; the access log takes every request. `WASMSERVE_LOG_STREAM=stdout`
//! puts the console log on stdout instead (what a container's log collector reads, and
//! where TorchServe logs; the container image sets it); `stderr` is the default.

use std::path::Path;

use anyhow::Context as _;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The target of access log lines.
pub const ACCESS: &str = "access";
/// The target of handler output (model log).
pub const MODEL: &str = "wasmserve::model";

/// Keeps the file writers flushing; drop it last.
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

fn level_filter() -> EnvFilter {
    EnvFilter::try_from_env("WASMSERVE_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

fn appender(dir: &Path, prefix: &str) -> anyhow::Result<RollingFileAppender> {
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(prefix)
        .filename_suffix("log")
        .max_log_files(14)
        .build(dir)
        .with_context(|| format!("creating the {prefix} log in {}", dir.display()))
}

/// The console log's stream, from `WASMSERVE_LOG_STREAM` (`stdout` or `stderr`), and
/// whether it is a terminal (then it gets colours).
fn console_writer() -> anyhow::Result<(fmt::writer::BoxMakeWriter, bool)> {
    use std::io::IsTerminal as _;
    let stream = std::env::var("WASMSERVE_LOG_STREAM").unwrap_or_default();
    match stream.as_str() {
        "stdout" => Ok((
            fmt::writer::BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )),
        "" | "stderr" => Ok((
            fmt::writer::BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )),
        other => anyhow::bail!("WASMSERVE_LOG_STREAM is {other:?}: it must be stdout or stderr"),
    }
}

/// Installs the console log, and the log files when `log_dir` is given.
pub fn init(log_dir: Option<&Path>) -> anyhow::Result<LogGuards> {
    let (writer, ansi) = console_writer()?;
    let console = fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(level_filter().and(filter_fn(|m| m.is_span() || m.target() != ACCESS)));
    let mut guards = Vec::new();
    let mut files = Vec::new();
    if let Some(dir) = log_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the log folder {}", dir.display()))?;
        let (access, g) = tracing_appender::non_blocking(appender(dir, "access_log")?);
        guards.push(g);
        files.push(
            fmt::layer()
                .with_writer(access)
                .with_ansi(false)
                .with_target(false)
                .with_level(false)
                .with_filter(filter_fn(|m| m.is_span() || m.target() == ACCESS))
                .boxed(),
        );
        let (model, g) = tracing_appender::non_blocking(appender(dir, "model_log")?);
        guards.push(g);
        files.push(
            fmt::layer()
                .with_writer(model)
                .with_ansi(false)
                .with_filter(level_filter().and(filter_fn(|m| m.is_span() || m.target() == MODEL)))
                .boxed(),
        );
        let (server, g) = tracing_appender::non_blocking(appender(dir, "ts_log")?);
        guards.push(g);
        files.push(
            fmt::layer()
                .with_writer(server)
                .with_ansi(false)
                .with_filter(level_filter().and(filter_fn(|m| {
                    m.is_span() || (m.target() != ACCESS && m.target() != MODEL)
                })))
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(console)
        .with(files)
        .try_init()
        .context("installing the logger")?;
    Ok(LogGuards(guards))
}
