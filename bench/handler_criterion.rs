//! Criterion micro-benchmark: the built-in `image_classifier`'s preprocess (kitten.jpg →
//! `[1, 3, 224, 224]`) and postprocess (1000 logits → top-5 JSON), in the sandbox (the
//! component the server embeds, in a fresh wasmtime instance with the server's limits;
//! decoding and resizing go through the host's `image` interface as in production)
//! against the same Rust code compiled natively (the `image_classifier` crate as an
//! rlib).
//!
//! `cargo bench --bench handler_criterion`

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmserve::sandbox::{Dtype, Tensor};
use wasmserve_handler::Handler as _;

fn logits() -> Vec<f32> {
    (0..1000)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let kitten = std::fs::read(common::asset("images/kitten.jpg")).unwrap();
    let labels = std::fs::read(common::asset("images/index_to_name.json")).unwrap();
    let model_dir = tempfile::tempdir().unwrap();
    std::fs::write(model_dir.path().join("index_to_name.json"), &labels).unwrap();

    // In the sandbox.
    let (_runtime, component, sandbox) =
        common::builtin_sandbox("image_classifier", model_dir.path());
    let mut instance = component.instantiate(&sandbox).unwrap();
    let req = common::body_request(kitten.clone());
    let data: Vec<u8> = logits().iter().flat_map(|v| v.to_le_bytes()).collect();
    let outputs = vec![Tensor {
        name: String::new(),
        dtype: Dtype::Float32,
        shape: vec![1, 1000],
        data,
    }];

    // Natively: the same crate, with the SDK's own types.
    let native_ctx = wasmserve_handler::Context {
        model_name: "bench".into(),
        model_version: "1.0".into(),
        manifest: "{}".into(),
        config: "{}".into(),
        batch_size: 1,
        device: "cpu".into(),
    };
    let native = image_classifier::ImageClassifier::init(&native_ctx).unwrap();
    let native_req = wasmserve_handler::Request {
        id: "bench".into(),
        headers: vec![],
        parts: vec![wasmserve_handler::Part {
            name: "body".into(),
            content_type: None,
            data: kitten.clone(),
        }],
    };
    let native_outputs =
        || vec![wasmserve_handler::Tensor::from_slice(&[1, 1000], &logits()).unwrap()];

    let mut pre = c.benchmark_group("image_classifier preprocess (kitten.jpg)");
    pre.sample_size(50);
    pre.bench_function("sandboxed", |b| {
        b.iter(|| std::hint::black_box(instance.preprocess(&req, None).unwrap().unwrap()))
    });
    pre.bench_function("native", |b| {
        b.iter(|| std::hint::black_box(native.preprocess(&native_req).unwrap()))
    });
    pre.finish();

    let mut post = c.benchmark_group("image_classifier postprocess (1000 logits)");
    post.bench_function("sandboxed", |b| {
        b.iter(|| {
            std::hint::black_box(instance.postprocess(&req, &outputs, None).unwrap().unwrap())
        })
    });
    post.bench_function("native", |b| {
        b.iter(|| std::hint::black_box(native.postprocess(&native_req, native_outputs()).unwrap()))
    });
    post.finish();

    let mut inst = c.benchmark_group("image_classifier instance");
    inst.bench_function("instantiate + init", |b| {
        b.iter(|| std::hint::black_box(component.instantiate(&sandbox).unwrap()))
    });
    inst.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
