//! `wasmserve handler new` from a binary with no checkout of this repository around: a
//! copy of the binary in an empty folder scaffolds a project for each target, each builds
//! with plain `cargo build` against the SDK the binary carries, the copy archives both
//! (the wasip1 core module made into a component) and one server serves both alike.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tch::{Kind, Tensor};

/// Runs `program args` in `dir` and returns its stdout; fails the test with stderr.
fn run(program: &Path, args: &[&str], dir: &Path, envs: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    // The outer cargo's flags are for the host target, not the guest's.
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{} {args:?} in {}:\n{}",
        program.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_scaffold_from_a_copied_binary_builds_for_both_targets_and_serves() {
    // An empty folder with a copy of the binary (its rpath finds libtorch).
    let place = tempfile::tempdir().unwrap();
    let binary = place.path().join("wasmserve");
    std::fs::copy(bin(), &binary).unwrap();
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(!place.path().starts_with(checkout));

    // Build targets are shared between runs to save time; the projects are not.
    let target_dir = Path::new(env!("WASMSERVE_GUEST_DIR")).join("../../generated");
    let cargo = PathBuf::from(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let mut wasms = Vec::new();
    for (name, target) in [("echo-p2", "wasm32-wasip2"), ("echo-p1", "wasm32-wasip1")] {
        run(
            &binary,
            &["handler", "new", name, "--target", target],
            place.path(),
            &[],
        );
        let project = place.path().join(name);
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(
            !manifest.contains(&checkout.display().to_string()),
            "the project must not point into the checkout:\n{manifest}"
        );
        for f in [
            "src/lib.rs",
            "README.md",
            ".cargo/config.toml",
            "vendor/wasmserve-handler/Cargo.toml",
            "vendor/wasmserve-handler/src/lib.rs",
            "wit/handler.wit",
        ] {
            assert!(project.join(f).is_file(), "{name}: {f} missing");
        }
        let config = std::fs::read_to_string(project.join(".cargo/config.toml")).unwrap();
        assert!(
            config.contains(&format!("target = \"{target}\"")),
            "{config}"
        );
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        assert!(
            readme.contains(&format!("target/{target}/release/")),
            "{readme}"
        );

        run(
            &cargo,
            &["build", "--release"],
            &project,
            &[("CARGO_TARGET_DIR", &target_dir)],
        );
        let wasm = target_dir.join(format!("{target}/release/{}.wasm", name.replace('-', "_")));
        let bytes = std::fs::read(&wasm).unwrap();
        // wasip2 gives a component (layer 1), wasip1 a core module (version 1).
        let component = bytes[4..8] == [0x0d, 0x00, 0x01, 0x00];
        assert_eq!(component, target == "wasm32-wasip2", "{}", wasm.display());
        wasms.push((name, wasm));
    }

    // A second project of the same name is refused, and the first is left as it was.
    let again = Command::new(&binary)
        .args(["handler", "new", "echo-p2"])
        .current_dir(place.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Archive both with the copied binary and serve them side by side.
    let store = ModelStore::new();
    let example = Tensor::zeros([1, 5], (Kind::Uint8, tch::Device::Cpu));
    let model = traced_model(store.path(), "double.pt", &[example], |xs| {
        vec![xs[0].to_kind(Kind::Float) * 2.0]
    });
    let mut mars = Vec::new();
    for (name, wasm) in &wasms {
        run(
            &binary,
            &[
                "archive",
                "--model-name",
                name,
                "-v",
                "1.0",
                "--serialized-file",
                model.to_str().unwrap(),
                "--handler",
                wasm.to_str().unwrap(),
                "--export-path",
                store.path().to_str().unwrap(),
            ],
            place.path(),
            &[],
        );
        mars.push(format!("{name}.mar"));
    }
    let mars: Vec<&str> = mars.iter().map(String::as_str).collect();
    let server = Server::start(store.path(), &mars, "");
    let want: Vec<f64> = b"hello".iter().map(|&b| 2.0 * b as f64).collect();
    for (name, _) in &wasms {
        let (status, body) = json(server.post(&format!("/predictions/{name}"), b"hello".to_vec()));
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(
            body,
            serde_json::json!([{"name": "", "shape": [1, 5], "data": want}]),
            "{name}"
        );
    }
}
