//! Handlers written in other languages than Rust, end to end: each example is built from
//! source by its build script (which installs its toolchain into the cache the first
//! time: componentize-py from PyPI, componentize-js from npm), archived with
//! `wasmserve archive`, served and asked with real inputs against the answers PyTorch
//! gives. Nothing is skipped: a toolchain that cannot be installed fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Runs `scripts/<script> <dir>/<name>.wasm` and returns the component's path.
fn build(script: &str, dir: &Path, name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = dir.join(format!("{name}.wasm"));
    let run = Command::new(root.join("scripts").join(script))
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        run.status.success(),
        "{script} failed ({}):\n{}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert!(
        bytes.starts_with(b"\0asm\x0d\0\x01\0"),
        "{script} did not write a component"
    );
    out
}

/// The server over `store`, with its compiled-component cache inside the store: these
/// components are tens of MB compiled and each build differs, so a shared cache would
/// only grow.
fn serve(store: &ModelStore, model: &str) -> Server {
    let cache = store.path().join("cache");
    Server::start_with_env(
        store.path(),
        &[model],
        "",
        &[("WASMSERVE_CACHE", cache.to_str().unwrap())],
    )
}

#[test]
fn python_handler_classifies_the_ten_digits() {
    let store = ModelStore::new();
    let wasm = build("build-python-handler.sh", store.path(), "python_mnist");
    store.archive(
        "pymnist",
        &asset("models/vit4mnist.ptl"),
        wasm.to_str().unwrap(),
        &[],
    );
    let server = serve(&store, "pymnist.mar");
    for digit in 0..10 {
        let png = std::fs::read(asset(&format!("images/mnist/{digit}.png"))).unwrap();
        let (status, body) = json(server.post("/predictions/pymnist", png));
        assert_eq!((status, &body), (200, &serde_json::json!(digit)));
    }
    // TorchServe's form field works too.
    let png = std::fs::read(asset("images/mnist/3.png")).unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .part("data", reqwest::blocking::multipart::Part::bytes(png));
    let (status, body) = json(
        client()
            .post(server.url("/predictions/pymnist"))
            .multipart(form)
            .send()
            .unwrap(),
    );
    assert_eq!((status, body), (200, serde_json::json!(3)));
    // A bad request fails alone, with the handler's status and message.
    let (status, body) = json(server.post("/predictions/pymnist", b"not an image".to_vec()));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not an image"),
        "{body}"
    );
    let (status, _) = json(server.post(
        "/predictions/pymnist",
        std::fs::read(asset("images/mnist/7.png")).unwrap(),
    ));
    assert_eq!(status, 200);
}

/// Builds a reddit text-classifier handler with `script`, serves it with
/// reddit_bytelstm.pt and checks the two reference sentences, the JSON form and an
/// empty post.
fn check_reddit_handler(script: &str, model: &str) {
    let store = ModelStore::new();
    let wasm = build(script, store.path(), model);
    store.archive(
        model,
        &asset("models/reddit_bytelstm.pt"),
        wasm.to_str().unwrap(),
        &[&asset("models/reddit_topics.txt")],
    );
    let labels: Vec<String> = std::fs::read_to_string(asset("models/reddit_topics.txt"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    assert_eq!(labels.len(), 16);
    let server = serve(&store, &format!("{model}.mar"));
    for (text, topic, p) in [
        (
            "The Lakers beat the Celtics in overtime last night",
            "nba",
            0.9999,
        ),
        (
            "New patch nerfs Mercy and buffs Reinhardt",
            "Overwatch",
            0.857,
        ),
    ] {
        let (status, body) =
            json(server.post(&format!("/predictions/{model}"), text.as_bytes().to_vec()));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["topic"], topic, "{text}: {body}");
        let probs = body["probabilities"].as_object().unwrap();
        // Every label of the file, in its order.
        assert_eq!(
            probs.keys().collect::<Vec<_>>(),
            labels.iter().collect::<Vec<_>>()
        );
        let q = probs[topic].as_f64().unwrap();
        assert!((q - p).abs() <= 0.05 * p, "{text}: {q} against {p}");
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .unwrap();
        assert_eq!(best.0, topic);
    }
    // The same sentence as JSON.
    let (status, body) = json(
        client()
            .post(server.url(&format!("/predictions/{model}")))
            .json(
                &serde_json::json!({"text": "The Lakers beat the Celtics in overtime last night"}),
            )
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["probabilities"]["nba"].as_f64().unwrap() > 0.99,
        "{body}"
    );
    // An empty post fails alone.
    let (status, body) = json(server.post(&format!("/predictions/{model}"), Vec::new()));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("empty"),
        "{body}"
    );
}

#[test]
fn js_handler_classifies_reddit_posts() {
    check_reddit_handler("build-js-handler.sh", "jsreddit");
}

#[test]
fn c_handler_classifies_reddit_posts() {
    check_reddit_handler("build-c-handler.sh", "creddit");
}
