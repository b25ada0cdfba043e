//! Build script of the `wasmserve` binary.
//!
//! 1. Builds the handler components of the workspace (the built-ins under `handlers/`
//!    and the examples under `examples/`) for `wasm32-wasip2`, in their own target
//!    folder so that this nested cargo does not wait on the outer one's lock. The
//!    built-ins are embedded with `include_bytes!`; tests find all of them through
//!    `WASMSERVE_GUEST_DIR`.
//! 2. Sets an rpath to libtorch, so that the binary and the tests run without
//!    `LD_LIBRARY_PATH`, and with a CUDA libtorch keeps `libtorch_cuda.so` linked.
//! 3. Compiles `host/cpp/optimize.cpp` (TorchScript freezing and
//!    `optimize_for_inference`, which tch does not expose) against the same libtorch,
//!    with the flags torch-sys uses for its own C++.
//! 4. Compiles `host/cpp/jpeg.c`, the C side of the JPEG decoder (`imaging::jpeg`),
//!    against the libjpeg-turbo sources that mozjpeg-sys builds.
//! 5. Compiles the gRPC services in `proto/` (TorchServe's and KServe's, wire-compatible
//!    copies of their `.proto` files) into Rust with protox, a protobuf compiler in
//!    Rust, and tonic-prost-build: no `protoc` to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest crates to build: package names in the workspace.
const GUESTS: &[&str] = &[
    "image_classifier",
    "image_segmenter",
    "object_detector",
    "text_classifier",
    "base_handler",
    "mnist_handler",
    "stream_classifier",
    "hostile_handler",
    "tensor_probe",
    "legacy_handler",
    "pipeline_probe",
    "asl_handler",
    "workflow_join",
];

/// Guests that build the SDK with feature `pipeline` (the `pipeline` world): in a cargo
/// invocation of their own, since cargo unifies features within one and a component
/// binds one world.
const PIPELINE_GUESTS: &[&str] = &["mnist_number"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["handlers", "examples", "wit", "tests/guests", "proto"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    build_guests(&root);
    libtorch_rpath(&root);
    compile_jit_shim(&root);
    compile_jpeg_shim(&root);
    compile_protos(&root);
}

/// `host/cpp/jpeg.c` (the JPEG decoder's setjmp and limits, see `imaging::jpeg`),
/// against the headers of the libjpeg-turbo that mozjpeg-sys builds (`DEP_JPEG_INCLUDE`).
fn compile_jpeg_shim(root: &Path) {
    let source = root.join("host/cpp/jpeg.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let mut build = cc::Build::new();
    build.pic(true).flag_if_supported("-std=c99").file(&source);
    if let Some(dirs) = std::env::var_os("DEP_JPEG_INCLUDE") {
        for dir in std::env::split_paths(&dirs) {
            build.include(dir);
        }
    }
    build.compile("wasmserve_jpeg");
}

/// The services the gRPC frontend serves, from `proto/` (their imports are found there,
/// and protox knows the `google/protobuf` ones itself).
const PROTOS: &[&str] = &[
    "torchserve/inference.proto",
    "torchserve/management.proto",
    "kserve/grpc_service.proto",
];

fn compile_protos(root: &Path) {
    let dir = root.join("proto");
    let files = protox::compile(PROTOS, [&dir]).unwrap_or_else(|e| {
        panic!(
            "the .proto files in {} do not compile: {e:?}",
            dir.display()
        )
    });
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Tensors' raw contents as reference-counted buffers, not copied vectors.
        .bytes(".inference")
        .compile_fds(files)
        .expect("generating the gRPC code");
}

fn build_guests(root: &Path) {
    // Beside the outer build's artifacts, so that a cached CARGO_TARGET_DIR (CI) keeps
    // the guests too.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    for guests in [GUESTS, PIPELINE_GUESTS] {
        cargo_build_guests(root, &target_dir, guests);
    }
    let out = target_dir.join("wasm32-wasip2").join("guest");
    for guest in GUESTS.iter().chain(PIPELINE_GUESTS) {
        let wasm = out.join(format!("{guest}.wasm"));
        assert!(wasm.is_file(), "{} was not built", wasm.display());
    }
    println!("cargo:rustc-env=WASMSERVE_GUEST_DIR={}", out.display());
}

fn cargo_build_guests(root: &Path, target_dir: &Path, guests: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "guest"])
        .arg("--target-dir")
        .arg(target_dir)
        // The outer build's flags and target are for the host, not for the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for guest in guests {
        cmd.args(["-p", guest]);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the handler components");
    if !status.success() {
        panic!(
            "building the handler components {guests:?} for wasm32-wasip2 failed (see \
             above). If the target is missing: `rustup target add wasm32-wasip2` (or \
             `make deps`)."
        );
    }
}

fn compile_jit_shim(root: &Path) {
    let source = root.join("host/cpp/optimize.cpp");
    println!("cargo:rerun-if-changed={}", source.display());
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        return;
    };
    let path = root.join(libtorch);
    let include = path.canonicalize().unwrap_or(path).join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // torch-sys's default (LIBTORCH_CXX11_ABI), which the PyPI wheels are built with.
        .flag(format!(
            "-D_GLIBCXX_USE_CXX11_ABI={}",
            std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
        ))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file(&source)
        .compile("wasmserve_jit");
}

fn libtorch_rpath(root: &Path) {
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        println!(
            "cargo:warning=LIBTORCH is not set; run `make deps` (scripts/install-libtorch.sh)"
        );
        return;
    };
    let path = root.join(&libtorch);
    let lib = path.canonicalize().unwrap_or(path).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // A CUDA libtorch: nothing in the binary calls into libtorch_cuda.so directly (its
    // kernels register themselves when it is loaded), so the linker's default
    // --as-needed would drop it and CUDA would be missing at run time. Keep it.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
