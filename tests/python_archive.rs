//! Python handlers given to `wasmserve archive --handler X.py`, with the real binary: a
//! handler written against `examples/python_handler`'s `wasmserve_handler` module is built
//! into a component by the archiver itself (componentize-py, installed into the cache the
//! first time) and served; a plain TorchServe handler is refused, naming its import and
//! pointing at the example; and a TorchServe-made `.mar` naming a `.py` handler fails to
//! load with a message that says how to rebuild it.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// `examples/python_handler`.
fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python_handler")
}

/// `wasmserve archive` of `handler` over vit4mnist into `out`: success, stdout, stderr.
fn archive(name: &str, handler: &Path, out: &Path) -> (bool, String, String) {
    let model = asset("models/vit4mnist.ptl");
    let o = wasmserve(&[
        "archive",
        "--model-name",
        name,
        "-v",
        "1.0",
        "--serialized-file",
        model.to_str().unwrap(),
        "--handler",
        handler.to_str().unwrap(),
        "--export-path",
        out.to_str().unwrap(),
    ]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The manifest of the archive at `mar`.
fn manifest(mar: &Path) -> serde_json::Value {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(mar).unwrap()).unwrap();
    let entry = zip.by_name("MAR-INF/MANIFEST.json").unwrap();
    serde_json::from_reader(entry).unwrap()
}

#[test]
fn a_python_handler_is_built_by_the_archiver_and_classifies_the_ten_digits() {
    let store = ModelStore::new();
    // A copy of the example, so that nothing (no __pycache__) lands in the repository;
    // without its wasmserve_handler.py, which the archiver adds from the copy it embeds.
    let src = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".py") && name != "wasmserve_handler.py" {
            std::fs::copy(&path, src.path().join(&name)).unwrap();
        }
    }
    let handler = src.path().join("handler.py");
    // The archiver runs with the environment's cache (by default ~/.cache/wasmserve), where
    // componentize-py is installed once and shared with scripts/build-python-handler.sh;
    // the server below gets a cache of its own for the compiled component.
    let (ok, stdout, stderr) = archive("pydigits", &handler, store.path());
    assert!(ok, "archive failed:\n{stderr}");
    let mar = store.path().join("pydigits.mar");
    assert_eq!(stdout.trim(), mar.display().to_string(), "{stderr}");
    let m = manifest(&mar);
    assert_eq!(m["runtime"], "wasm", "{m}");
    assert_eq!(m["model"]["handler"], "handler.wasm", "{m}");
    let mut names: Vec<String> = std::fs::read_dir(src.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["handler.py", "png.py"],
        "the archiver wrote into the handler's folder"
    );

    let cache = store.path().join("cache");
    let server = Server::start_with_env(
        store.path(),
        &["pydigits.mar"],
        "",
        &[("WASMSERVE_CACHE", cache.to_str().unwrap())],
    );
    for digit in 0..10 {
        let png = std::fs::read(asset(&format!("images/mnist/{digit}.png"))).unwrap();
        let (status, body) = json(server.post("/predictions/pydigits", png));
        assert_eq!((status, &body), (200, &serde_json::json!(digit)), "{digit}");
    }
    let (status, body) = json(server.post("/predictions/pydigits", b"not a png".to_vec()));
    assert_eq!(status, 400, "{body}");
}

/// A handler as TorchServe's documentation writes them.
const TORCHSERVE_HANDLER: &str = r#"import io

import torch
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler


class MyHandler(BaseHandler):
    def preprocess(self, data):
        image = Image.open(io.BytesIO(data[0].get("body")))
        return torch.tensor(list(image.getdata()), dtype=torch.float32)

    def postprocess(self, data):
        return [int(data.argmax())]
"#;

#[test]
fn a_plain_torchserve_handler_is_refused_with_what_runs_and_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let handler = dir.path().join("my_handler.py");
    std::fs::write(&handler, TORCHSERVE_HANDLER).unwrap();
    let (ok, _, stderr) = archive("mine", &handler, dir.path());
    assert!(!ok, "a TorchServe handler was archived:\n{stderr}");
    for part in [
        "my_handler.py imports torch (line 3)",
        "ts (line 5)",
        "numpy",
        "examples/python_handler",
        "wasmserve repository",
        "wasmserve_handler",
        "`image` interface",
        "--handler image_classifier",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from:\n{stderr}");
    }
    // Refused before anything is installed or built.
    assert!(!stderr.contains("installing componentize-py"), "{stderr}");
    assert!(!dir.path().join("mine.mar").exists());
}

#[test]
fn a_torchserve_archive_naming_a_python_handler_fails_to_load_with_how_to_rebuild_it() {
    let store = ModelStore::new();
    // What torch-model-archiver writes for `--handler my_handler.py`.
    {
        let file = std::fs::File::create(store.path().join("mine.mar")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default();
        let manifest = serde_json::json!({
            "createdOn": "01/02/2025 10:00:00",
            "runtime": "python",
            "model": {"modelName": "mine", "serializedFile": "vit4mnist.ptl",
                      "handler": "my_handler.py", "modelVersion": "1.0"},
            "archiverVersion": "0.12.0"
        });
        zip.start_file("MAR-INF/MANIFEST.json", opts).unwrap();
        std::io::Write::write_all(&mut zip, manifest.to_string().as_bytes()).unwrap();
        zip.start_file("vit4mnist.ptl", opts).unwrap();
        std::io::Write::write_all(
            &mut zip,
            &std::fs::read(asset("models/vit4mnist.ptl")).unwrap(),
        )
        .unwrap();
        zip.start_file("my_handler.py", opts).unwrap();
        std::io::Write::write_all(&mut zip, TORCHSERVE_HANDLER.as_bytes()).unwrap();
        zip.finish().unwrap();
    }
    let server = Server::start(store.path(), &[], "enable_model_api=true");
    let (status, body) = json(
        client()
            .post(server.mgmt("/models?url=mine.mar&initial_workers=1"))
            .send()
            .unwrap(),
    );
    assert!((400..600).contains(&status), "{status} {body}");
    let message = body["message"].as_str().unwrap_or_default();
    for part in [
        "\"my_handler.py\"",
        "wasmserve archive --handler my_handler.py",
        "examples/python_handler",
        "wasmserve repository",
        "numpy",
        "image_classifier",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {body}");
    }
    let (status, _) = json(server.post("/predictions/mine", b"x".to_vec()));
    assert_eq!(status, 404, "mine must not be registered");
}
