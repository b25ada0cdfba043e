//! The third-party clients, installed by `scripts/install-clients.sh` (pinned, cached),
//! and the scripts in `tests/clients/` that drive them and report as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Where the installer put the clients.
pub struct Clients {
    /// The venv's python (tritonclient, kserve, grpcio-tools, numpy).
    pub python: PathBuf,
    /// Triton's perf_analyzer (a wrapper script).
    pub perf_analyzer: PathBuf,
    /// TorchServe 0.12's own protos and their Python stubs (`proto/`, `stubs/`).
    pub torchserve_grpc: PathBuf,
}

/// The clients, installed once per test binary.
pub fn clients() -> &'static Clients {
    static PATHS: OnceLock<Clients> = OnceLock::new();
    PATHS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-clients.sh");
        let out = Command::new(&script)
            .output()
            .expect("running install-clients.sh");
        assert!(
            out.status.success(),
            "install-clients.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let find = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("install-clients.sh printed no {key}: {text}"))
        };
        Clients {
            python: find("python="),
            perf_analyzer: find("perf_analyzer="),
            torchserve_grpc: find("torchserve_grpc="),
        }
    })
}

/// Runs `tests/clients/SCRIPT` with `args`; its one JSON object.
pub fn script(name: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/clients")
        .join(name);
    let out = Command::new(&clients().python)
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {stdout}"))
}

/// Writes `values` as a float32 `.npy` of `shape` (format 1.0).
pub fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// An output's values as the scripts report them (float64 text of float32 values).
pub fn values(output: &Value) -> Vec<f32> {
    output["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {output}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// A short `perf_analyzer` run (`protocol`: `http` or `grpc`) against `model` at `url`
/// (`host:port`), concurrency 1 and 2; fails on any error it reports. Windows that do
/// not agree are accepted (`-s`): on a shared machine under test load they seldom do,
/// and what is checked is that every request succeeds.
pub fn perf_analyzer(protocol: &str, url: &str, model: &str) {
    let out = Command::new(&clients().perf_analyzer)
        .args([
            "-m",
            model,
            "-u",
            url,
            "-i",
            protocol,
            "--concurrency-range",
            "1:2",
            "--measurement-interval",
            "1000",
            "--max-trials",
            "3",
            "--stability-percentage",
            "1000",
            "-b",
            "1",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "perf_analyzer failed: {text}");
    // It exits 0 even when requests failed: their errors are in its output.
    assert!(
        !text.contains("error") && !text.contains("Failed"),
        "perf_analyzer saw errors: {text}"
    );
    for level in ["Request concurrency: 1", "Request concurrency: 2"] {
        assert!(text.contains(level), "{level} missing: {text}");
    }
    assert!(text.matches("Throughput:").count() >= 2, "{text}");
}
