//! Kitten latency: one prediction end to end through the server (median of 100 after
//! warm-up, concurrency 1) next to the same TorchScript forward alone and the same
//! preprocess + forward + postprocess done natively in this process, all in one run.
//!
//! `cargo bench --bench latency` (the server runs with its defaults: one lane per core,
//! libtorch intra-op threads = cores / lanes; the native figures use the same threads).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

const WARMUP: usize = 20;
const RUNS: usize = 100;

fn time(n: usize, f: impl FnMut()) -> Duration {
    median_time(WARMUP, n, f)
}

fn main() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(store.path(), &["mobilenet=mobilenet.mar"], "");
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let client = client();
    let url = server.url("/predictions/mobilenet");
    let e2e = time(RUNS, || {
        let resp = client.post(&url).body(kitten.clone()).send().unwrap();
        assert!(resp.status().is_success());
        resp.bytes().unwrap();
    });
    drop(server);

    let threads = (std::thread::available_parallelism().unwrap().get() / 2).max(1);
    tch::set_num_threads(threads as i32);
    let mut model = tch::CModule::load(asset("models/mobilenet_v2_quantized.pt")).unwrap();
    model.set_eval();
    let tensor =
        wasmserve::imaging::imagenet_transform(&kitten, wasmserve::imaging::Mode::Exact).unwrap();
    let input = tch::Tensor::from_slice(&tensor.to_vec::<f32>().unwrap()).view([1, 3, 224, 224]);
    let forward = time(RUNS, || {
        let _ = std::hint::black_box(tch::no_grad(|| model.forward_ts(&[&input])).unwrap());
    });
    let native = time(RUNS, || {
        let t = wasmserve::imaging::imagenet_transform(&kitten, wasmserve::imaging::Mode::Exact)
            .unwrap();
        let x = tch::Tensor::from_slice(&t.to_vec::<f32>().unwrap()).view([1, 3, 224, 224]);
        let logits = tch::no_grad(|| model.forward_ts(&[x])).unwrap();
        let logits: Vec<f32> = logits.view([-1]).try_into().unwrap();
        let probs = wasmserve_handler::output::softmax(&logits);
        std::hint::black_box(wasmserve_handler::output::top_k(&probs, 5));
    });

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "kitten.jpg, mobilenet_v2_quantized.pt, median of {RUNS} after {WARMUP} warm-up, {threads} intra-op thread(s)"
    );
    println!("| what | ms | ratio to forward |");
    println!("|---|---:|---:|");
    println!(
        "| forward alone (libtorch, in process) | {:.2} | 1.00 |",
        ms(forward)
    );
    println!(
        "| preprocess + forward + postprocess, native | {:.2} | {:.2} |",
        ms(native),
        ms(native) / ms(forward)
    );
    println!(
        "| end to end through wasmserve (HTTP, sandboxed handler) | {:.2} | {:.2} |",
        ms(e2e),
        ms(e2e) / ms(forward)
    );
    println!("end-to-end / native pipeline = {:.2}", ms(e2e) / ms(native));
}
