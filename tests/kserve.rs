//! KServe v2 (Open Inference Protocol) and v1 REST on the inference port, end to end
//! with the real binary, over hand-made HTTP: what each endpoint answers, tensors in
//! JSON and binary compared bit for bit with libtorch at the same thread count, a JPEG
//! as a BYTES tensor through the image handler, v1 instances, the repository API, and
//! bad input refused with a 400 that leaves the server serving. The real clients
//! (tritonclient, the kserve SDK, perf_analyzer) have their own tests
//! (`tests/clients.rs`).

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

/// libtorch intra-op threads on both sides of a comparison (see `tests/trunk.rs`).
const THREADS: usize = 1;

fn get(server: &Server, path: &str) -> (u16, Value) {
    json(client().get(server.url(path)).send().unwrap())
}

fn post_json(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    json(client().post(server.url(path)).json(body).send().unwrap())
}

/// A binary-extension request: the JSON header, then `tail`.
fn post_binary(
    server: &Server,
    path: &str,
    header: &Value,
    tail: &[u8],
) -> reqwest::blocking::Response {
    let head = serde_json::to_vec(header).unwrap();
    let mut body = head.clone();
    body.extend_from_slice(tail);
    client()
        .post(server.url(path))
        .header("Inference-Header-Content-Length", head.len())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap()
}

/// Splits a binary-extension response into its JSON header and the bytes after it.
fn split_binary(resp: reqwest::blocking::Response) -> (u16, Value, Vec<u8>) {
    let status = resp.status().as_u16();
    let n: Option<usize> = resp
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = resp.bytes().unwrap().to_vec();
    let n = n.unwrap_or(body.len());
    let head = serde_json::from_slice(&body[..n])
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, head, body[n..].to_vec())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn v2_metadata_health_and_config() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let (status, meta) = get(&server, "/v2");
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["name"], "wasmserve");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    assert_eq!(
        get(&server, "/v2/health/live"),
        (200, json!({"live": true}))
    );
    assert_eq!(
        get(&server, "/v2/health/ready"),
        (200, json!({"ready": true}))
    );
    assert_eq!(
        get(&server, "/v2/models/mobilenet/ready"),
        (200, json!({"name": "mobilenet", "ready": true}))
    );
    for path in ["/v2/models/mobilenet", "/v2/models/mobilenet/versions/1.0"] {
        let (status, m) = get(&server, path);
        assert_eq!(status, 200, "{m}");
        assert_eq!(m["name"], "mobilenet");
        assert_eq!(m["versions"], json!(["1.0"]));
        assert_eq!(
            m["inputs"],
            json!([{"name": "input__0", "datatype": "FP32", "shape": [-1, 3, 224, 224]}])
        );
        assert_eq!(
            m["outputs"],
            json!([{"name": "output__0", "datatype": "FP32", "shape": [-1, 1000]}])
        );
    }
    let (status, config) = get(&server, "/v2/models/mobilenet/config");
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["max_batch_size"], 1);
    assert_eq!(
        config["input"],
        json!([{"name": "input__0", "data_type": "TYPE_FP32", "dims": [3, 224, 224]}])
    );
    assert!(
        config.get("dynamic_batching").is_none(),
        "batchSize 1: {config}"
    );
    let (status, list) = get(&server, "/v2/models");
    assert_eq!((status, list), (200, json!({"models": ["mobilenet"]})));

    // What is not there answers in v2's own format.
    for path in [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/mobilenet/versions/9.9",
        "/v2/nothing",
    ] {
        let (status, body) = get(&server, path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let resp = client()
        .delete(server.url("/v2/models/mobilenet/infer"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[test]
fn v2_dynamic_batching_shows_in_the_config() {
    let store = ModelStore::new();
    store.mobilenet_with_config(Some(&format!(
        "{MOBILENET_TENSORS}batchSize: 4\nmaxBatchDelay: 7\n"
    )));
    let server = Server::start(store.path(), &["mobilenet=mobilenet.mar"], "");
    let (_, config) = get(&server, "/v2/models/mobilenet/config");
    assert_eq!(config["max_batch_size"], 4);
    assert_eq!(
        config["dynamic_batching"]["max_queue_delay_microseconds"],
        7000
    );
}

#[test]
fn v2_tensors_in_json_and_binary_are_libtorch_bit_for_bit() {
    let store = ModelStore::new();
    let mut server = mobilenet_v2_server(&store, THREADS, "");
    let values = v2_input_values();
    let expected = libtorch_mobilenet(&values, THREADS);

    // JSON in, JSON out.
    let request = json!({
        "id": "abc",
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": values}],
        "outputs": [{"name": "output__0"}],
    });
    let (status, body) = post_json(&server, "/v2/models/mobilenet/infer", &request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], "mobilenet");
    assert_eq!(body["model_version"], "1.0");
    assert_eq!(body["id"], "abc");
    let out = &body["outputs"][0];
    assert_eq!(out["name"], "output__0");
    assert_eq!(out["datatype"], "FP32");
    assert_eq!(out["shape"], json!([1, 1000]));
    let got: Vec<f32> = out["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, expected, "JSON tensors differ from libtorch's");

    // Binary in, binary out (the request-level default).
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "parameters": {"binary_data_output": true},
    });
    let (status, head, tail) = split_binary(post_binary(
        &server,
        "/v2/models/mobilenet/infer",
        &header,
        &raw,
    ));
    assert_eq!(status, 200, "{head}");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 4000);
    assert!(head["outputs"][0].get("data").is_none());
    assert_eq!(
        f32s(&tail),
        expected,
        "binary tensors differ from libtorch's"
    );

    // Binary in, JSON out for an output asked for without binary_data.
    let header = json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "output__0", "parameters": {"binary_data": false}}],
    });
    let (status, head, tail) = split_binary(post_binary(
        &server,
        "/v2/models/mobilenet/infer",
        &header,
        &raw,
    ));
    assert_eq!(status, 200, "{head}");
    assert!(tail.is_empty());
    assert_eq!(head["outputs"][0]["data"].as_array().unwrap().len(), 1000);

    // The tensor path counts as an inference like any other.
    let metrics = client()
        .get(server.metrics_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let count = wasmserve::metrics::sample(
        &metrics,
        "ts_inference_requests_total",
        "model_name=\"mobilenet\"",
    )
    .unwrap_or_default();
    assert!(count >= 3.0, "{metrics}");
}

#[test]
fn v2_a_jpeg_as_bytes_goes_through_the_handler() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let kitten = kitten_jpg();
    let (status, direct) = json(server.post("/predictions/mobilenet", kitten.clone()));
    assert_eq!(status, 200, "{direct}");

    let mut tail = (kitten.len() as u32).to_le_bytes().to_vec();
    tail.extend_from_slice(&kitten);
    let header = json!({
        "inputs": [{"name": "data", "shape": [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": tail.len()}}],
        "outputs": [{"name": "classes", "parameters": {"binary_data": false}}],
    });
    let (status, head, _) = split_binary(post_binary(
        &server,
        "/v2/models/mobilenet/infer",
        &header,
        &tail,
    ));
    assert_eq!(status, 200, "{head}");
    let out = &head["outputs"][0];
    assert_eq!(
        (out["name"].as_str(), out["datatype"].as_str()),
        (Some("classes"), Some("BYTES"))
    );
    assert_eq!(out["shape"], json!([1]));
    assert_eq!(out["parameters"]["content_type"], "application/json");
    let answer: Value = serde_json::from_str(out["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(answer, direct, "the v2 answer differs from /predictions'");

    // Two images in one tensor are two requests to the handler: two answers.
    let mut two = tail.clone();
    two.extend_from_slice(&tail);
    let header = json!({
        "inputs": [{"name": "data", "shape": [2], "datatype": "BYTES",
                    "parameters": {"binary_data_size": two.len()}}],
        "parameters": {"binary_data_output": true},
    });
    let (status, head, bytes) = split_binary(post_binary(
        &server,
        "/v2/models/mobilenet/infer",
        &header,
        &two,
    ));
    assert_eq!(status, 200, "{head}");
    assert_eq!(head["outputs"][0]["shape"], json!([2]));
    let first_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let first: Value = serde_json::from_slice(&bytes[4..4 + first_len]).unwrap();
    assert_eq!(first, direct);

    // A handler's 400 (not an image) is the client's error, in v2's format.
    let header = json!({"inputs": [{"name": "data", "shape": [1], "datatype": "BYTES", "data": ["not an image"]}]});
    let (status, body) = post_json(&server, "/v2/models/mobilenet/infer", &header);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn v2_bad_input_is_a_clear_400_and_nothing_breaks() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let infer = "/v2/models/mobilenet/infer";
    let tensor = |datatype: &str, shape: Value, data: Value| json!({"inputs": [{"name": "input__0", "shape": shape, "datatype": datatype, "data": data}]});
    let ones = json!(vec![1.0; 3 * 224 * 224]);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "wrong datatype",
            tensor(
                "INT32",
                json!([1, 3, 224, 224]),
                json!(vec![1; 3 * 224 * 224]),
            ),
            "must be FP32",
        ),
        (
            "shape × datatype ≠ data",
            tensor("FP32", json!([1, 3, 224, 224]), json!([1.0, 2.0])),
            "elements",
        ),
        (
            "wrong shape",
            tensor(
                "FP32",
                json!([1, 3, 224, 223]),
                json!(vec![1.0; 3 * 224 * 223]),
            ),
            "shape",
        ),
        (
            "unknown datatype",
            tensor("FLOAT32", json!([1]), json!([1.0])),
            "datatype",
        ),
        (
            "unknown input",
            json!({"inputs": [{"name": "x", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": ones}]}),
            "unknown input",
        ),
        (
            "unknown output",
            json!({"inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": ones}], "outputs": [{"name": "nope"}]}),
            "unknown output",
        ),
        ("no inputs", json!({"inputs": []}), "no inputs"),
        ("not a request", json!({"x": 1}), "inference request"),
        (
            "mixed kinds",
            json!({"inputs": [
            {"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": ones},
            {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}),
            "mix",
        ),
        (
            "UINT32 to the forward",
            tensor("UINT32", json!([1]), json!([1])),
            "UINT32",
        ),
    ];
    for (what, body, expect) in &cases {
        let (status, answer) = post_json(&server, infer, body);
        assert_eq!(status, 400, "{what}: {answer}");
        let e = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {answer}"));
        assert!(e.contains(expect), "{what}: {e:?} should say {expect:?}");
    }
    // Binary sizes that lie, a header length past the body, bytes left over.
    let raw = vec![0u8; 3 * 224 * 224 * 4];
    let header = |size: usize| {
        json!({"inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                           "parameters": {"binary_data_size": size}}]})
    };
    for (what, h, tail) in [
        (
            "size under the shape's",
            header(raw.len() - 4),
            &raw[..raw.len() - 4],
        ),
        ("size past the body", header(raw.len() + 4), &raw[..]),
        ("bytes left over", header(raw.len() - 4), &raw[..]),
    ] {
        let (status, body, _) = split_binary(post_binary(&server, infer, &h, tail));
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    let head = serde_json::to_vec(&header(raw.len())).unwrap();
    let resp = client()
        .post(server.url(infer))
        .header(
            "Inference-Header-Content-Length",
            head.len() + raw.len() + 1,
        )
        .body([head.clone(), raw.clone()].concat())
        .send()
        .unwrap();
    let (status, body) = json(resp);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Inference-Header-Content-Length")
    );

    // Still serving, both ways.
    let (status, body, _) = split_binary(post_binary(&server, infer, &header(raw.len()), &raw));
    assert_eq!(status, 200, "{body}");
    let (status, _) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    assert_eq!(status, 200);
}

#[test]
fn v1_instances_are_batched_handler_requests() {
    let store = ModelStore::new();
    let server = mobilenet_v2_server(&store, THREADS, "");
    let kitten = kitten_jpg();
    let (_, direct) = json(server.post("/predictions/mobilenet", kitten.clone()));
    assert_eq!(
        get(&server, "/v1/models"),
        (200, json!({"models": ["mobilenet"]}))
    );
    assert_eq!(
        get(&server, "/v1/models/mobilenet"),
        (200, json!({"name": "mobilenet", "ready": true}))
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&kitten);
    let (status, body) = post_json(
        &server,
        "/v1/models/mobilenet:predict",
        &json!({"instances": [{"data": b64}, {"data": b64}]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"], json!([direct, direct]));
    let (status, body) = get(&server, "/v1/models/nope");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = post_json(
        &server,
        "/v1/models/mobilenet:predict",
        &json!({"rows": []}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("instances"));
}

#[test]
fn v2_repository_load_and_unload_follow_enable_model_api() {
    let store = ModelStore::new();
    store.mobilenet_with_config(Some(MOBILENET_TENSORS));
    let server = Server::start(store.path(), &[], "");
    let (status, body) = post_json(&server, "/v2/repository/models/mobilenet/load", &json!({}));
    assert_eq!(status, 405, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("enable-model-api"),
        "{body}"
    );
    drop(server);

    let server = Server::start(store.path(), &[], "enable_model_api=true");
    assert_eq!(get(&server, "/v2/models/mobilenet/ready").0, 404);
    let (status, body) = post_json(&server, "/v2/repository/models/mobilenet/load", &json!({}));
    assert_eq!(
        (status, body),
        (200, json!({"name": "mobilenet", "load": true}))
    );
    assert_eq!(get(&server, "/v2/models/mobilenet/ready").0, 200);
    let (status, index) = post_json(&server, "/v2/repository/index", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(
        index,
        json!([{"name": "mobilenet", "version": "1.0", "state": "READY"}])
    );
    let (status, body) = post_json(
        &server,
        "/v2/repository/models/mobilenet/unload",
        &json!({}),
    );
    assert_eq!(
        (status, body),
        (200, json!({"name": "mobilenet", "unload": true}))
    );
    assert_eq!(get(&server, "/v2/models/mobilenet").0, 404);
    let (status, body) = post_json(&server, "/v2/repository/models/nothing/load", &json!({}));
    assert_eq!(status, 404, "{body}");
}

#[test]
fn v2_needs_the_inference_key_but_health_probes_do_not() {
    let store = ModelStore::new();
    store.mobilenet_with_config(Some(MOBILENET_TENSORS));
    let (server, _) = start_with_keys(&store, &["mobilenet=mobilenet.mar"]);
    assert_eq!(get(&server, "/v2/health/ready").0, 200);
    assert_eq!(get(&server, "/v2/health/live").0, 200);
    let (status, body) = get(&server, "/v2/models/mobilenet");
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Token"), "{body}");
    // TorchServe's routes keep TorchServe's answer.
    let (status, body) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("InvalidKeyException"))
    );
}

#[test]
fn v2_text_as_json_bytes_goes_through_the_text_handler() {
    let store = ModelStore::new();
    store.archive_with_config(
        "reddit",
        &asset("models/reddit_bytelstm.pt"),
        "text_classifier",
        &[&asset("models/reddit_topics.txt")],
        Some("labels: reddit_topics.txt\noutput: probabilities\n"),
    );
    let server = Server::start(store.path(), &["reddit.mar"], "intra_op_threads=1");
    let texts = [
        "The Lakers beat the Celtics in overtime last night",
        "New patch nerfs Mercy and buffs Reinhardt",
    ];
    let direct: Vec<Value> = texts
        .iter()
        .map(|t| json(server.post("/predictions/reddit", t.as_bytes().to_vec())).1)
        .collect();
    // Two texts in one BYTES tensor: two handler requests, batched, two answers.
    let (status, body) = post_json(
        &server,
        "/v2/models/reddit/infer",
        &json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]}),
    );
    assert_eq!(status, 200, "{body}");
    let out = &body["outputs"][0];
    assert_eq!(out["shape"], json!([2]));
    let answers: Vec<Value> = out["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_str(d.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(answers, direct);
}
