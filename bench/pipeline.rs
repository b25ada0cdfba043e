//! Pipelines against the forwards they run, called directly: per-request time at
//! concurrency 1, the server and the in-process forwards taking turns in one run.
//!
//! - `examples/mnist_number` reading a ten-digit PNG (decode, ten crops, one batched
//!   `models.infer` of `[10, 1, 28, 28]` on vit4mnist) against: the same `[10, 1, 28,
//!   28]` forward in this process; the same tensor through the server as one KServe v2
//!   request; and the ten digits as ten `/predictions/mnist` requests, one after another
//!   (what a client does without a pipeline).
//!
//! `cargo bench --bench pipeline` (`make bench-pipeline`; about a minute).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::keepalive::KeepAlive;
use common::*;
use serde_json::json;

const THREADS: usize = 1;
const NUMBER: &str = "0123456789";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The ten digits as MNIST's `[10, 1, 28, 28]` input, normalised as the pipeline does.
fn digit_batch() -> Vec<f32> {
    let mut values = Vec::new();
    for d in NUMBER.chars() {
        let png = std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        values.extend(
            img.pixels()
                .map(|p| (p.0[0] as f32 / 255.0 - 0.1307) / 0.3081),
        );
    }
    values
}

fn main() {
    let store = ModelStore::new();
    let vit = asset("models/vit4mnist.ptl");
    store.archive("mnist", &vit, guest("mnist_handler").to_str().unwrap(), &[]);
    let yaml = store.path().join("number-config.yaml");
    std::fs::write(&yaml, "models: [mnist]\n").unwrap();
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "number",
        "-v",
        "1.0",
        "--handler",
        guest("mnist_number").to_str().unwrap(),
        "-c",
        yaml.to_str().unwrap(),
        "--export-path",
        store.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(
        store.path(),
        &["mnist.mar", "number.mar"],
        &format!("intra_op_threads={THREADS}"),
    );

    let values = digit_batch();
    let mut conn = KeepAlive::connect(&server.base);
    let number_req = conn.request("/predictions/number", &[], &written_number(NUMBER, 1));
    let v2_req = conn.request(
        "/v2/models/mnist/infer",
        &["Content-Type: application/json"],
        &serde_json::to_vec(
            &json!({"inputs": [{"name": "input__0", "shape": [10, 1, 28, 28],
            "datatype": "FP32", "data": values}]}),
        )
        .unwrap(),
    );
    let digit_reqs: Vec<Vec<u8>> = NUMBER
        .chars()
        .map(|d| {
            let png = std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap();
            conn.request("/predictions/mnist", &[], &png)
        })
        .collect();
    let answer: serde_json::Value = serde_json::from_slice(&conn.send(&number_req).body).unwrap();
    assert_eq!(answer["number"], json!(NUMBER), "{answer}");

    // The in-process forward runs on a thread of its own at THREADS, as a lane does.
    let (to_fwd, fwd_rx) = std::sync::mpsc::channel::<()>();
    let (fwd_done, from_fwd) = std::sync::mpsc::channel::<Duration>();
    let fwd_values = values.clone();
    let forwarder = std::thread::spawn(move || {
        tch::set_num_threads(THREADS as i32);
        let mut m = tch::CModule::load(&vit).unwrap();
        m.set_eval();
        let x = tch::Tensor::from_slice(&fwd_values).view([10, 1, 28, 28]);
        for () in fwd_rx {
            let t = Instant::now();
            let out = tch::no_grad(|| m.forward_ts(&[&x])).unwrap();
            std::hint::black_box(Vec::<f32>::try_from(out.view([-1])).unwrap());
            fwd_done.send(t.elapsed()).unwrap();
        }
    });
    let forward = || {
        to_fwd.send(()).unwrap();
        from_fwd.recv().unwrap()
    };
    let mut timed = |reqs: &[&Vec<u8>]| {
        let t = Instant::now();
        for r in reqs {
            std::hint::black_box(conn.send(r).body);
        }
        t.elapsed()
    };
    let digits: Vec<&Vec<u8>> = digit_reqs.iter().collect();
    for _ in 0..5 {
        timed(&[&number_req]);
        timed(&[&v2_req]);
        timed(&digits);
        forward();
    }
    let (rounds, per_round) = (7, 15);
    let (mut pipe, mut v2, mut ten, mut fwd) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (mut a, mut b, mut c, mut d) = (vec![], vec![], vec![], vec![]);
        for _ in 0..per_round {
            a.push(timed(&[&number_req]));
            b.push(timed(&[&v2_req]));
            c.push(timed(&digits));
            d.push(forward());
        }
        pipe.push(median(a));
        v2.push(median(b));
        ten.push(median(c));
        fwd.push(median(d));
    }
    drop(to_fwd);
    forwarder.join().unwrap();
    let (pipe, v2, ten, fwd) = (median(pipe), median(v2), median(ten), median(fwd));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let x = |d: Duration| d.as_secs_f64() / fwd.as_secs_f64();
    println!(
        "concurrency 1, {THREADS} intra-op thread(s), keep-alive; medians of {rounds} rounds \
         of {per_round}, the server and the in-process forward in turns\n"
    );
    println!("| example: {NUMBER:?} in digits (vit4mnist) | ms per request | × the forward |");
    println!("|---|---:|---:|");
    println!(
        "| the `[10, 1, 28, 28]` forward, called directly in-process | {:.2} | 1.00 |",
        ms(fwd)
    );
    println!(
        "| the same tensor as one KServe v2 request (JSON) | {:.2} | {:.2} |",
        ms(v2),
        x(v2)
    );
    println!(
        "| `mnist_number` pipeline: PNG in, decode, crops, one batched `models.infer` | {:.2} | {:.2} |",
        ms(pipe),
        x(pipe)
    );
    println!(
        "| without a pipeline: ten `/predictions/mnist` requests, one per digit | {:.2} | {:.2} |",
        ms(ten),
        x(ten)
    );
}
