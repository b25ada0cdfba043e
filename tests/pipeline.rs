//! The `pipeline` world end to end: a pipeline archive (no model of its own,
//! `models:` in its model-config.yaml) calls vit4mnist's forward through
//! `models.infer`, and gets what KServe v2 gets for the same tensor; every way a
//! pipeline can misuse the import fails its own request with a clear message and
//! leaves the server serving.

mod common;

use common::*;
use serde_json::{Value, json};

fn post_json(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    json(client().post(server.url(path)).json(body).send().unwrap())
}

fn argmax(row: &[Value]) -> usize {
    let row: Vec<f64> = row.iter().map(|v| v.as_f64().unwrap()).collect();
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap()
}

fn call(server: &Server, pipeline: &str, request: Value) -> (u16, Value) {
    json(server.post(
        &format!("/predictions/{pipeline}"),
        request.to_string().into_bytes(),
    ))
}

#[test]
fn a_pipeline_calls_a_model_and_misuse_fails_its_own_request() {
    let store = ModelStore::new();
    store.mnist();
    store.pipeline("pipe", "pipeline_probe", "models: [mnist, ghost, pipe]\n");
    let server = Server::start(store.path(), &["mnist.mar", "pipe.mar"], "");

    // The forward through the pipeline is the forward KServe v2 runs.
    let values = mnist_batch("0123456789");
    let (status, body) = call(
        &server,
        "pipe",
        json!({"model": "mnist", "shape": [10, 1, 28, 28], "data": values}),
    );
    assert_eq!(status, 200, "{body}");
    let out = &body["outputs"][0];
    assert_eq!(out["shape"], json!([10, 10]));
    let got = out["data"].as_array().unwrap();
    let answer: Vec<usize> = got.chunks(10).map(argmax).collect();
    assert_eq!(answer, (0..10).collect::<Vec<_>>());
    let (status, direct) = post_json(
        &server,
        "/v2/models/mnist/infer",
        &json!({"inputs": [{"name": "input__0", "shape": [10, 1, 28, 28], "datatype": "FP32", "data": values}]}),
    );
    assert_eq!(status, 200, "{direct}");
    let want = direct["outputs"][0]["data"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} against {w}");
    }
    // Asking for the version explicitly works too.
    let (status, _) = call(
        &server,
        "pipe",
        json!({"model": "mnist", "version": "1.0", "shape": [1, 1, 28, 28], "data": &values[..784]}),
    );
    assert_eq!(status, 200);

    // Misuse, each failing its own request with the reason.
    let one = &values[..784];
    let cases = [
        (
            json!({"model": "other", "shape": [1, 1, 28, 28], "data": one}),
            403,
            "not one this pipeline declares",
        ),
        (
            json!({"model": "ghost", "shape": [1, 1, 28, 28], "data": one}),
            404,
            "ghost",
        ),
        (
            json!({"model": "pipe", "shape": [1, 1, 28, 28], "data": one}),
            400,
            "is a pipeline",
        ),
        (
            json!({"model": "mnist", "version": "9.9", "shape": [1, 1, 28, 28], "data": one}),
            404,
            "9.9",
        ),
        // Malformed: the shape says two images, the data holds one.
        (
            json!({"model": "mnist", "shape": [2, 1, 28, 28], "data": one}),
            400,
            "mnist",
        ),
        // A loop of model calls is cut short.
        (
            json!({"model": "mnist", "shape": [1, 1, 28, 28], "data": one, "calls": 300}),
            429,
            "more than 256 times",
        ),
    ];
    for (request, status, needle) in cases {
        let (got, body) = call(&server, "pipe", request.clone());
        assert_eq!(got, status, "{request:.60}: {body}");
        assert!(
            body.to_string().contains(needle),
            "{needle:?} not in {body}"
        );
    }

    // A pipeline takes requests, not tensors.
    let (status, body) = post_json(
        &server,
        "/v2/models/pipe/infer",
        &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}),
    );
    assert_eq!(status, 400, "{body}");
    // And nothing else broke.
    let png = std::fs::read(asset("images/mnist/7.png")).unwrap();
    assert_eq!(
        json(server.post("/predictions/mnist", png)),
        (200, json!(7))
    );
}

#[test]
fn a_pipeline_archive_needs_no_model_and_takes_none() {
    let store = ModelStore::new();
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "pipe",
        "-v",
        "1.0",
        "--serialized-file",
        asset("models/vit4mnist.ptl").to_str().unwrap(),
        "--handler",
        guest("pipeline_probe").to_str().unwrap(),
        "--export-path",
        store.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a pipeline"), "{err}");
    // A handler without a model file is refused the other way round.
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "m",
        "-v",
        "1.0",
        "--handler",
        guest("mnist_handler").to_str().unwrap(),
        "--export-path",
        store.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--serialized-file is required"), "{err}");
}

/// The example pipeline `examples/mnist_number` (on the SDK's `pipeline` feature): an
/// image of several digits is cut into crops that vit4mnist classifies in one batched
/// call (one inference on the model per request), and the answer is the number.
#[test]
fn a_number_in_handwritten_digits_is_read_with_one_batched_call() {
    let store = ModelStore::new();
    store.mnist();
    store.pipeline("number", "mnist_number", "models: [mnist]\ndigits: 12\n");
    let mut server = Server::start(store.path(), &["mnist.mar", "number.mar"], "");

    let before = server.metric("ts_inference_requests_total", "mnist");
    let mut calls = 0.0;
    for (number, scale) in [("0123456789", 1), ("9081726354", 1), ("42", 3), ("7", 2)] {
        let (status, body) =
            json(server.post("/predictions/number", written_number(number, scale)));
        calls += 1.0;
        assert_eq!(status, 200, "{number}: {body}");
        assert_eq!(body["number"], json!(number), "{body}");
        let digits = body["digits"].as_array().unwrap();
        assert_eq!(digits.len(), number.len());
        for d in digits {
            assert!(d["probability"].as_f64().unwrap() > 0.5, "{body}");
        }
    }
    // One call on the model per request, whatever the number of digits.
    assert_eq!(
        server.metric("ts_inference_requests_total", "mnist") - before,
        calls
    );

    // Too many digits, and what is not an image, fail their own request.
    let (status, body) =
        json(server.post("/predictions/number", written_number("0123456789012", 1)));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("more than the 12"), "{body}");
    let (status, _) = json(server.post("/predictions/number", b"not an image".to_vec()));
    assert_eq!(status, 400);
    let (status, body) = json(server.post("/predictions/number", written_number("5", 1)));
    assert_eq!((status, &body["number"]), (200, &json!("5")), "{body}");
}
