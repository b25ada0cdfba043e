//! The real third-party clients against the real binary: `tritonclient.http`, the
//! `kserve` SDK's v2 REST client and `perf_analyzer`, installed by
//! `scripts/install-clients.sh` (pinned, cached) and driven by the scripts in
//! `tests/clients/`, which report what came back as JSON. The numbers are compared
//! here: tensors bit for bit with libtorch at the same thread count, a JPEG's answer
//! with `/predictions`'.

mod common;

use common::clients::{perf_analyzer, script, values, write_npy};
use common::*;
use serde_json::Value;

/// libtorch intra-op threads on both sides of a comparison (see `tests/trunk.rs`).
const THREADS: usize = 1;

/// `host:port` of the inference API (tritonclient's form).
fn host_port(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
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
    perf_analyzer("http", &host_port(&server), "mobilenet");
}
