//! TorchServe 0.12 for the benchmarks that compare with it: the scripts in
//! `bench/torchserve/` (setup.sh installs it into the cache, models.sh makes its
//! archives, serve.sh starts, measures and stops it) driven from Rust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::assets;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `bench/torchserve/NAME ARGS…` and returns its stdout, trimmed; panics when it
/// fails (its stderr goes to ours).
pub fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("bench/torchserve").join(name))
        .args(args)
        .env("WASMSERVE_ASSETS", assets())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(out.status.success(), "{name} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes the benchmark models and TorchServe's archives (bench/torchserve/models.sh)
/// in the cache, once: returns the folder (`resnet18.pt`, `ts-store/mobilenet.mar`,
/// `ts-store/resnet18.mar`).
pub fn archives() -> PathBuf {
    let cache = std::env::var_os("WASMSERVE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wasmserve"))
        .join("bench");
    std::fs::create_dir_all(&cache).unwrap();
    script("models.sh", &[cache.to_str().unwrap()]);
    cache
}

/// A TorchServe instance started by bench/torchserve/serve.sh, stopped on drop.
pub struct TorchServe {
    pub work: tempfile::TempDir,
    pub port: u16,
    /// Launch to all workers ready, as serve.sh measured it.
    pub ready: Duration,
}

impl TorchServe {
    pub fn start(store: &Path, workers: usize, mode: &str, models: &str) -> TorchServe {
        let work = tempfile::tempdir().unwrap();
        let port = 18000 + (std::process::id() % 1000) as u16 * 3;
        let secs = script(
            "serve.sh",
            &[
                "start",
                store.to_str().unwrap(),
                work.path().to_str().unwrap(),
                &workers.to_string(),
                mode,
                &port.to_string(),
                models,
            ],
        );
        let ready = secs
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .unwrap_or_default();
        TorchServe { work, port, ready }
    }

    pub fn url(&self, model: &str) -> String {
        format!("http://127.0.0.1:{}/predictions/{model}", self.port)
    }

    pub fn rss_mib(&self) -> f64 {
        script("serve.sh", &["rss", self.work.path().to_str().unwrap()])
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
            / 1024.0
    }
}

impl Drop for TorchServe {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("bench/torchserve/serve.sh"))
            .args(["stop", self.work.path().to_str().unwrap()])
            .status();
    }
}
