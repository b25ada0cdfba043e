//! gRPC with clients nobody here wrote: TorchServe 0.12's own `inference.proto` and
//! `management.proto` (from its PyPI wheel) compiled by grpcio-tools into Python stubs,
//! `tritonclient.grpc`, and `perf_analyzer -i grpc`; all installed by
//! `scripts/install-clients.sh` and driven by `tests/clients/ts_grpc.py` and
//! `triton_grpc.py`, which report as JSON. Answers are compared with the REST APIs'
//! and, for tensors, with libtorch bit for bit. Also the wire compatibility of
//! `proto/` with both upstreams (`proto_compat.py`).

mod common;

use std::path::Path;

use common::clients::{clients, perf_analyzer, script, values, write_npy};
use common::*;
use serde_json::{Value, json};

/// libtorch intra-op threads on both sides of a comparison (see `tests/trunk.rs`).
const THREADS: usize = 1;

/// `ts_grpc.py` against `server`, with `args` after the global options.
fn ts(server: &Server, args: &[&str]) -> Value {
    ts_with(server, &[], args)
}

fn ts_with(server: &Server, global: &[&str], args: &[&str]) -> Value {
    let stubs = clients().torchserve_grpc.display().to_string();
    let mut all = vec![
        "--stubs",
        stubs.as_str(),
        "--inference",
        server.grpc.as_str(),
        "--management",
        server.grpc_management.as_str(),
    ];
    all.extend_from_slice(global);
    all.extend_from_slice(args);
    script("ts_grpc.py", &all)
}

fn error_code(r: &Value) -> &str {
    r["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {r}"))
}

fn digit(n: u32) -> String {
    asset(&format!("images/mnist/{n}.png"))
        .display()
        .to_string()
}

#[test]
fn torchserves_own_client_pings_predicts_and_streams() {
    let store = ModelStore::new();
    store.mobilenet();
    store.digit_streamer();
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar", "streamer=streamer.mar"],
        "",
    );
    let kitten = asset("images/kitten.jpg").display().to_string();
    let dog = asset("images/dog.jpg").display().to_string();
    let (_, rest_kitten) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    let (_, rest_dog) = json(server.post("/predictions/mobilenet", std::fs::read(&dog).unwrap()));

    let ping = ts(&server, &["ping"]);
    assert_eq!(ping["health"], json!({"status": "Healthy"}), "{ping}");

    let p = ts(
        &server,
        &["predict", "--model", "mobilenet", "--file", &kitten],
    );
    println!("Predictions: {p}");
    assert_eq!(p["prediction_json"], rest_kitten);
    assert!(p["prediction_json"]["tabby"].is_number());
    let p = ts(
        &server,
        &[
            "predict",
            "--model",
            "mobilenet",
            "--version",
            "1.0",
            "--file",
            &kitten,
        ],
    );
    assert_eq!(p["prediction_json"], rest_kitten);

    // StreamPredictions: the streaming example answers each of three digits in turn.
    let parts: Vec<String> = [3, 5, 8]
        .iter()
        .map(|&d| format!("d{d}={}", digit(d)))
        .collect();
    let mut args = vec!["stream", "--model", "streamer"];
    for p in &parts {
        args.extend(["--part", p.as_str()]);
    }
    let s = ts(&server, &args);
    println!("StreamPredictions: {s}");
    let got: Vec<(String, String)> = s["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let line = &r["prediction_json"];
            let best = line["classes"]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .clone();
            (line["image"].as_str().unwrap().to_string(), best)
        })
        .collect();
    let want: Vec<(String, String)> = [3, 5, 8]
        .iter()
        .map(|d| (format!("d{d}"), d.to_string()))
        .collect();
    assert_eq!(got, want);
    // A handler that does not stream: one response.
    let s = ts(
        &server,
        &["stream", "--model", "mobilenet", "--file", &kitten],
    );
    assert_eq!(s["responses"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["responses"][0]["prediction_json"], rest_kitten);

    // StreamPredictions2: four requests on one stream, answered in order.
    let s2 = ts(
        &server,
        &[
            "stream2",
            "--model",
            "mobilenet",
            "--file",
            &kitten,
            "--file",
            &dog,
            "--count",
            "2",
        ],
    );
    println!("StreamPredictions2: {s2}");
    let responses = s2["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 4, "{s2}");
    for (i, r) in responses.iter().enumerate() {
        let want = if i % 2 == 0 { &rest_kitten } else { &rest_dog };
        assert_eq!(&r["prediction_json"], want, "response {i}");
        assert_eq!(r["sequence_id"], format!("seq-{i}"));
    }
    // A request that fails is answered with its status, and the stream goes on.
    let bad = ts(
        &server,
        &[
            "stream2",
            "--model",
            "no_such_model",
            "--file",
            &kitten,
            "--count",
            "2",
        ],
    );
    let responses = bad["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "{bad}");
    assert_eq!(responses[0]["status"]["code"], 5, "NOT_FOUND: {bad}");
    assert!(
        responses[0]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_model")
    );

    let nope = ts(
        &server,
        &["predict", "--model", "no_such_model", "--file", &kitten],
    );
    assert_eq!(error_code(&nope), "NOT_FOUND", "{nope}");
    assert!(
        nope["error"]["details"]
            .as_str()
            .unwrap()
            .contains("no_such_model")
    );
    let empty = std::env::temp_dir().join(format!("wasmserve-empty-{}", std::process::id()));
    std::fs::write(&empty, b"").unwrap();
    let e = ts(
        &server,
        &[
            "predict",
            "--model",
            "mobilenet",
            "--file",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(error_code(&e), "INVALID_ARGUMENT", "{e}");
    std::fs::remove_file(&empty).unwrap();
}

#[test]
fn torchserves_own_client_runs_every_management_rpc() {
    let store = ModelStore::new();
    store.mobilenet();
    let dir = tempfile::tempdir().unwrap();
    store.archive(
        "doubler",
        &doubling_model(dir.path()),
        guest("tensor_probe").to_str().unwrap(),
        &[],
    );
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar"],
        "enable_model_api=true",
    );
    let m = |rpc: &str, fields: &[&str]| {
        let mut args = vec!["manage", rpc];
        for f in fields {
            args.extend(["--field", f]);
        }
        ts(&server, &args)
    };
    let list = m("ListModels", &[]);
    println!("ListModels: {list}");
    let (_, rest) = json(client().get(server.mgmt("/models")).send().unwrap());
    assert_eq!(list["msg"], rest);

    let r = m(
        "RegisterModel",
        &[
            "url=doubler.mar",
            "model_name=doubler",
            "initial_workers=1",
            "synchronous=true",
        ],
    );
    println!("RegisterModel: {r}");
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("\"doubler\" Version: 1.0 registered"),
        "{r}"
    );
    let d = m("DescribeModel", &["model_name=doubler"]);
    assert_eq!(d["msg"][0]["modelName"], "doubler", "{d}");
    assert_eq!(d["msg"][0]["minWorkers"], 1);
    let (_, rest) = json(client().get(server.mgmt("/models/doubler")).send().unwrap());
    assert_eq!(d["msg"][0]["modelUrl"], rest[0]["modelUrl"]);

    let s = m(
        "ScaleWorker",
        &[
            "model_name=doubler",
            "min_worker=2",
            "max_worker=2",
            "synchronous=true",
        ],
    );
    assert_eq!(s["msg"], "Workers scaled to 2 for model: doubler", "{s}");
    let d = m(
        "DescribeModel",
        &["model_name=doubler", "model_version=1.0"],
    );
    assert_eq!(d["msg"][0]["workers"].as_array().unwrap().len(), 2, "{d}");
    let s = m("SetDefault", &["model_name=doubler", "model_version=1.0"]);
    assert_eq!(
        s["msg"], "Default version successfully updated for model \"doubler\" to \"1.0\"",
        "{s}"
    );
    let u = m("UnregisterModel", &["model_name=doubler"]);
    assert_eq!(u["msg"], "Model \"doubler\" unregistered", "{u}");
    let gone = m("DescribeModel", &["model_name=doubler"]);
    assert_eq!(error_code(&gone), "NOT_FOUND", "{gone}");
    let v = m("SetDefault", &["model_name=mobilenet", "model_version=9.9"]);
    assert_eq!(error_code(&v), "NOT_FOUND", "{v}");
    let nourl = m("RegisterModel", &[]);
    assert_eq!(error_code(&nourl), "INVALID_ARGUMENT", "{nourl}");
    assert!(nourl["error"]["details"].as_str().unwrap().contains("url"));
}

#[test]
fn bad_grpc_input_gets_a_status_that_says_what_is_wrong() {
    let store = ModelStore::new();
    store.mobilenet_with_config(Some(MOBILENET_TENSORS));
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar"],
        "max_request_size=1000000",
    );
    // Not a protobuf message at all.
    let raw = ts(
        &server,
        &[
            "raw",
            "--method",
            "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions",
            "--bytes-hex",
            "ff",
        ],
    );
    assert_eq!(error_code(&raw), "INVALID_ARGUMENT", "{raw}");
    assert!(
        raw["error"]["details"]
            .as_str()
            .unwrap()
            .contains("protobuf"),
        "{raw}"
    );
    let raw = ts(
        &server,
        &[
            "raw",
            "--method",
            "/inference.GRPCInferenceService/ModelInfer",
            "--bytes-hex",
            "0a05",
        ],
    );
    assert_eq!(error_code(&raw), "INVALID_ARGUMENT", "{raw}");
    // Over max_request_size.
    let big = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(big.path(), vec![0u8; 1_200_000]).unwrap();
    let r = ts(
        &server,
        &[
            "predict",
            "--model",
            "mobilenet",
            "--file",
            big.path().to_str().unwrap(),
        ],
    );
    assert_eq!(error_code(&r), "RESOURCE_EXHAUSTED", "{r}");
    assert!(
        r["error"]["details"]
            .as_str()
            .unwrap()
            .contains("max_request_size"),
        "{r}"
    );
    // Raw contents whose size disagrees with the shape (tritonclient cannot send
    // those: it is asked through the raw call with a hand-made message).
    let msg = model_infer_message(
        "mobilenet",
        "input__0",
        "FP32",
        &[1, 3, 224, 224],
        &[0u8; 12],
    );
    let raw = ts(
        &server,
        &[
            "raw",
            "--method",
            "/inference.GRPCInferenceService/ModelInfer",
            "--bytes-hex",
            &msg,
        ],
    );
    assert_eq!(error_code(&raw), "INVALID_ARGUMENT", "{raw}");
    assert!(
        raw["error"]["details"]
            .as_str()
            .unwrap()
            .contains("input__0"),
        "{raw}"
    );
}

/// A `ModelInferRequest` with one input and its raw contents, encoded by hand (the
/// fields' numbers are Triton's), as hex.
fn model_infer_message(
    model: &str,
    input: &str,
    datatype: &str,
    shape: &[i64],
    raw: &[u8],
) -> String {
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    let mut tensor = Vec::new();
    field(1, input.as_bytes(), &mut tensor);
    field(2, datatype.as_bytes(), &mut tensor);
    let mut dims = Vec::new();
    for &d in shape {
        varint(d as u64, &mut dims);
    }
    field(3, &dims, &mut tensor);
    let mut msg = Vec::new();
    field(1, model.as_bytes(), &mut msg);
    field(5, &tensor, &mut msg);
    field(7, raw, &mut msg);
    msg.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn grpc_needs_the_keys_as_torchserve_does() {
    let store = ModelStore::new();
    store.mobilenet();
    let (server, key_file) = start_with_keys(&store, &["mobilenet.mar"]);
    let keys = keys(&key_file);
    let inference = keys["inference"]["key"].as_str().unwrap();
    let management = keys["management"]["key"].as_str().unwrap();
    let kitten = asset("images/kitten.jpg").display().to_string();
    let predict = ["predict", "--model", "mobilenet", "--file", kitten.as_str()];

    for (key, call) in [
        (None, &["ping"][..]),
        (None, &predict[..]),
        (Some("wrong"), &predict[..]),
        (Some(management), &predict[..]),
        (None, &["manage", "ListModels"][..]),
        (Some(inference), &["manage", "ListModels"][..]),
    ] {
        let global: Vec<&str> = key.map(|k| vec!["--key", k]).unwrap_or_default();
        let r = ts_with(&server, &global, call);
        assert_eq!(error_code(&r), "PERMISSION_DENIED", "{key:?} {call:?}: {r}");
        assert!(
            r["error"]["details"]
                .as_str()
                .unwrap()
                .contains("Token Authorization failed"),
            "{r}"
        );
    }
    let ok = ts_with(&server, &["--key", inference], &predict);
    assert!(ok["prediction_json"]["tabby"].is_number(), "{ok}");
    let ok = ts_with(&server, &["--key", inference], &["ping"]);
    assert_eq!(ok["health"]["status"], "Healthy", "{ok}");
    let ok = ts_with(&server, &["--key", management], &["manage", "ListModels"]);
    assert_eq!(ok["msg"]["models"][0]["modelName"], "mobilenet", "{ok}");
    // KServe's health needs no key (probes carry none), as over REST.
    let live = ts(
        &server,
        &[
            "raw",
            "--method",
            "/inference.GRPCInferenceService/ServerLive",
            "--bytes-hex",
            "",
        ],
    );
    assert!(live.get("error").is_none(), "{live}");
}

/// `triton_grpc.py` against `server`'s gRPC inference port.
fn triton(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["--url", server.grpc.as_str()];
    all.extend_from_slice(args);
    script("triton_grpc.py", &all)
}

#[test]
fn tritonclient_grpc_reads_metadata_and_gets_libtorchs_tensors() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("x.npy");
    let input = v2_input_values();
    write_npy(&npy, &[1, 3, 224, 224], &input);
    let expected = libtorch_mobilenet(&input, THREADS);
    let r = triton(
        &server,
        &[
            "--model",
            "mobilenet",
            "--input-npy",
            npy.to_str().unwrap(),
            "--input-name",
            "input__0",
            "--datatype",
            "FP32",
        ],
    );
    println!("tritonclient.grpc: {}", r["response"]);
    assert_eq!(
        (r["live"].as_bool(), r["ready"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(r["model_ready"], true);
    assert_eq!(r["server_metadata"]["name"], "wasmserve");
    let meta = &r["model_metadata"];
    assert_eq!(meta["platform"], "pytorch_libtorch");
    assert_eq!(meta["inputs"][0]["name"], "input__0");
    assert_eq!(meta["inputs"][0]["shape"], json!(["-1", "3", "224", "224"]));
    let config = &r["model_config"]["config"];
    assert_eq!(config["max_batch_size"], 1);
    assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
    assert_eq!(config["output"][0]["dims"], json!(["1000"]));
    let out = &r["outputs"]["output__0"];
    assert_eq!(out["binary"], true, "raw_output_contents: {r}");
    assert_eq!(
        values(out),
        expected,
        "tritonclient.grpc tensors differ from libtorch's"
    );
}

#[test]
fn tritonclient_grpc_sends_a_jpeg_as_bytes_and_streams() {
    let store = ModelStore::new();
    store.mobilenet();
    store.hostile("hostile", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar", "hostile=hostile.mar"],
        "",
    );
    let (_, direct) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    let kitten = asset("images/kitten.jpg").display().to_string();
    let r = triton(
        &server,
        &[
            "--model",
            "mobilenet",
            "--bytes-file",
            &kitten,
            "--no-probes",
        ],
    );
    let (_, out) = r["outputs"].as_object().unwrap().iter().next().unwrap();
    assert_eq!(out["datatype"], "BYTES");
    let answer: Value = serde_json::from_str(out["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(answer, direct, "the gRPC answer differs from /predictions'");

    // ModelStreamInfer: two requests on one stream, each answered as it was sent.
    let s = triton(
        &server,
        &[
            "--model",
            "mobilenet",
            "--bytes-file",
            &kitten,
            "--no-probes",
            "--stream",
            "2",
        ],
    );
    let results = s["stream"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{s}");
    for res in results {
        let (_, out) = res["outputs"].as_object().unwrap().iter().next().unwrap();
        let answer: Value = serde_json::from_str(out["data"][0].as_str().unwrap()).unwrap();
        assert_eq!(answer, direct);
    }
    // A streaming handler: each piece is a response of its own, in order.
    let command = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(command.path(), b"stream 3").unwrap();
    let s = triton(
        &server,
        &[
            "--model",
            "hostile",
            "--bytes-file",
            command.path().to_str().unwrap(),
            "--input-name",
            "body",
            "--no-probes",
            "--stream",
            "2",
        ],
    );
    println!("ModelStreamInfer of a streaming handler: {}", s["stream"]);
    let texts: Vec<(String, String)> = s["stream"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|res| {
            let (_, out) = res["outputs"].as_object().unwrap().iter().next().unwrap();
            (
                res["request_id"].as_str().unwrap().to_string(),
                out["data"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for id in ["0", "1"] {
        for t in ["piece 0\n", "piece 1\n", "piece 2\n", "done 3\n"] {
            want.push((id.to_string(), t.to_string()));
        }
    }
    assert_eq!(texts, want);
}

#[test]
fn tritonclient_grpc_sees_errors_with_their_codes() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let r = triton(&server, &["--model", "mobilenet", "--errors"]);
    println!("{r}");
    assert_eq!(r["model_ready_missing"]["result"], false);
    for case in [
        "model_metadata_missing",
        "model_config_missing",
        "infer_missing",
    ] {
        assert_eq!(r[case]["status"], "StatusCode.NOT_FOUND", "{case}: {r}");
        assert!(
            r[case]["message"]
                .as_str()
                .unwrap()
                .contains("no_such_model"),
            "{case}: {r}"
        );
    }
    assert_eq!(
        r["infer_bad_input"]["status"], "StatusCode.INVALID_ARGUMENT",
        "{r}"
    );
    assert!(
        r["infer_bad_input"]["message"]
            .as_str()
            .unwrap()
            .contains("input__0"),
        "{r}"
    );
}

#[test]
fn perf_analyzer_over_grpc_runs_without_errors() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    perf_analyzer("grpc", &server.grpc, "mobilenet");
}

#[test]
fn the_protos_are_wire_compatible_with_torchserves_and_tritons() {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let torchserve = clients().torchserve_grpc.join("proto");
    let r = script(
        "proto_compat.py",
        &[
            "--proto-root",
            proto.to_str().unwrap(),
            "--torchserve-protos",
            torchserve.to_str().unwrap(),
        ],
    );
    println!("{}", r["checked"]);
    assert_eq!(r["torchserve_checked"], true, "{r}");
    assert_eq!(r["mismatches"], json!([]), "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["checked"]["services"].as_u64().unwrap() >= 3, "{r}");
}
