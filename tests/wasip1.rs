//! Handlers built for `wasm32-wasip1` (the target users know as `wasm32-wasi`): a core
//! module built with plain `cargo build` against the SDK is made into a component by
//! `wasmserve archive`, served, and answers as the same handler built for
//! `wasm32-wasip2` does; a core module built for no world is refused with the way to
//! build it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Builds the workspace's `mnist_handler` example for wasm32-wasip1 with plain cargo, in
/// a target folder of its own (the outer build holds the workspace's lock).
fn build_wasip1_mnist() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = Path::new(env!("WASMSERVE_GUEST_DIR"))
        .join("../../..")
        .join("wasip1");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "mnist_handler",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cargo build --target wasm32-wasip1 failed (rustup target add wasm32-wasip1, or make deps):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target.join("wasm32-wasip1/release/mnist_handler.wasm");
    let bytes = std::fs::read(&wasm).unwrap();
    assert!(
        bytes.starts_with(b"\0asm\x01\0\0\0"),
        "wasm32-wasip1 gives a core module"
    );
    wasm
}

#[test]
fn a_wasip1_module_is_made_into_a_component_and_serves_like_the_wasip2_build() {
    let wasm = build_wasip1_mnist();
    let store = ModelStore::new();
    let mar = store.archive(
        "mnist1",
        &asset("models/vit4mnist.ptl"),
        wasm.to_str().unwrap(),
        &[],
    );
    // The archive holds the component, not the module.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&mar).unwrap()).unwrap();
    let mut packed = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name("mnist_handler.wasm").unwrap(), &mut packed)
        .unwrap();
    assert!(
        packed.starts_with(b"\0asm\x0d\0\x01\0"),
        "the archive holds a component"
    );
    store.archive(
        "mnist2",
        &asset("models/vit4mnist.ptl"),
        guest("mnist_handler").to_str().unwrap(),
        &[],
    );
    let server = Server::start(store.path(), &["mnist1.mar", "mnist2.mar"], "");
    for digit in 0..10 {
        let png = std::fs::read(asset(&format!("images/mnist/{digit}.png"))).unwrap();
        let p1 = json(server.post("/predictions/mnist1", png.clone()));
        let p2 = json(server.post("/predictions/mnist2", png));
        assert_eq!(p1, (200, serde_json::json!(digit)));
        assert_eq!(p1, p2);
    }
    // The handler's own errors and its log come through the adapter as from wasip2.
    let (status, body) = json(server.post("/predictions/mnist1", b"not an image".to_vec()));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_core_module_built_for_no_world_is_refused_with_the_way_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    // A valid core module without the SDK's WIT custom section.
    let wasm = dir.path().join("plain.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "plain",
        "-v",
        "1.0",
        "--serialized-file",
        asset("models/vit4mnist.ptl").to_str().unwrap(),
        "--handler",
        wasm.to_str().unwrap(),
        "--export-path",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "no WIT world",
        "wasm32-wasip1",
        "export_handler!",
        "wasmserve-handler",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    assert!(!dir.path().join("plain.mar").exists());
}
