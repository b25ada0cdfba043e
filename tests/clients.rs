//! The real third-party clients against the real binary: `tritonclient.http`, the
//! `kserve` SDK's v2 REST client and `perf_analyzer`, installed by
//! `scripts/install-clients.sh` (pinned, cached) and driven by the scripts in
//! `tests/clients/`, which report what came back as JSON. The numbers are compared
//! here: tensors bit for bit with libtorch at the same thread count, a JPEG's answer
//! with `/predictions`'.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// libtorch intra-op threads on both sides of a comparison (see `tests/trunk.rs`).
const THREADS: usize = 1;

/// `(python, perf_analyzer)` from the installer, once per test binary.
fn clients() -> &'static (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
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
        (find("python="), find("perf_analyzer="))
    })
}

/// Runs `tests/clients/SCRIPT` with `args`; its one JSON object.
fn script(name: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/clients")
        .join(name);
    let out = Command::new(&clients().0)
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

/// `host:port` of the inference API (tritonclient's form).
fn host_port(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Writes `values` as a float32 `.npy` of `shape` (format 1.0).
fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
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
fn values(output: &Value) -> Vec<f32> {
    output["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {output}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn tritonclient_http_reads_metadata_and_gets_libtorchs_tensors() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("x.npy");
    let input = v2_input_values();
    write_npy(&npy, &[1, 3, 224, 224], &input);
    let expected = libtorch_mobilenet(&input, THREADS);
    let url = host_port(&server);
    let base = [
        "--url",
        url.as_str(),
        "--model",
        "mobilenet",
        "--input-npy",
        npy.to_str().unwrap(),
        "--input-name",
        "input__0",
        "--datatype",
        "FP32",
    ];
    // Binary both ways (tritonclient's default), then JSON both ways.
    let binary = script(
        "triton_http.py",
        &[&base[..], &["--binary", "true"]].concat(),
    );
    println!("tritonclient, binary: {}", binary["response"]);
    assert_eq!(binary["live"], true);
    assert_eq!(binary["ready"], true);
    assert_eq!(binary["model_ready"], true);
    assert_eq!(
        binary["model_metadata"]["inputs"][0]["shape"],
        serde_json::json!([-1, 3, 224, 224])
    );
    assert_eq!(binary["model_config"]["max_batch_size"], 1);
    let out = &binary["outputs"]["output__0"];
    assert_eq!(out["binary"], true);
    assert_eq!(
        values(out),
        expected,
        "tritonclient binary tensors differ from libtorch's"
    );

    let json = script(
        "triton_http.py",
        &[&base[..], &["--binary", "false", "--output", "output__0"]].concat(),
    );
    let out = &json["outputs"]["output__0"];
    assert_eq!(out["binary"], false, "{}", json["response"]);
    assert_eq!(
        values(out),
        expected,
        "tritonclient JSON tensors differ from libtorch's"
    );
}

#[test]
fn tritonclient_sends_a_jpeg_as_bytes_to_the_image_handler() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let (status, direct) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    assert_eq!(status, 200);
    let url = host_port(&server);
    let kitten = asset("images/kitten.jpg");
    let result = script(
        "triton_bytes.py",
        &[
            "--url",
            &url,
            "--model",
            "mobilenet",
            "--file",
            kitten.to_str().unwrap(),
        ],
    );
    for call in ["binary", "json"] {
        let outputs = result[call]["outputs"].as_object().unwrap();
        let (_, out) = outputs
            .iter()
            .next()
            .unwrap_or_else(|| panic!("{call}: {result}"));
        assert_eq!(out["datatype"], "BYTES");
        let answer: Value = serde_json::from_str(out["data"][0].as_str().unwrap()).unwrap();
        assert_eq!(
            answer, direct,
            "{call}: the v2 answer differs from /predictions'"
        );
    }
}

#[test]
fn tritonclient_sees_errors_with_their_status() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let url = host_port(&server);
    let r = script("triton_errors.py", &["--url", &url, "--model", "mobilenet"]);
    println!("{r}");
    assert_eq!(r["model_ready_missing"]["result"], false);
    for case in [
        "model_metadata_missing",
        "model_config_missing",
        "infer_missing",
    ] {
        assert_eq!(r[case]["status"], "404", "{case}: {r}");
        assert!(
            r[case]["message"]
                .as_str()
                .unwrap()
                .contains("no_such_model"),
            "{case}: {r}"
        );
    }
    assert_eq!(r["infer_bad_input"]["status"], "400", "{r}");
    assert!(
        r["infer_bad_input"]["message"]
            .as_str()
            .unwrap()
            .contains("input__0")
    );
}

#[test]
fn kserve_sdk_v2_client_gets_libtorchs_tensors() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("x.npy");
    let input = v2_input_values();
    write_npy(&npy, &[1, 3, 224, 224], &input);
    let expected = libtorch_mobilenet(&input, THREADS);
    let base = [
        "--url",
        server.base.as_str(),
        "--model",
        "mobilenet",
        "--input-npy",
        npy.to_str().unwrap(),
        "--input-name",
        "input__0",
        "--datatype",
        "FP32",
    ];
    for extra in [&[][..], &["--binary", "--binary-output"][..]] {
        let r = script("kserve_v2.py", &[&base[..], extra].concat());
        assert_eq!(
            (r["live"].as_bool(), r["ready"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(r["model_ready"], true);
        assert_eq!(r["binary_response"], !extra.is_empty(), "{extra:?}");
        assert_eq!(
            values(&r["outputs"]["output__0"]),
            expected,
            "kserve SDK {extra:?}: tensors differ from libtorch's"
        );
    }
}

#[test]
fn perf_analyzer_runs_without_errors() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let url = host_port(&server);
    let out = Command::new(&clients().1)
        .args([
            "-m",
            "mobilenet",
            "-u",
            &url,
            "-i",
            "http",
            "--concurrency-range",
            "1:2",
            "--measurement-interval",
            "1000",
            "--max-trials",
            "3",
            "--stability-percentage",
            "100",
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
