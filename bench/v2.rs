//! The KServe v2 tensor path: one `[1, 3, 224, 224]` FP32 inference through the server
//! (binary tensors, concurrency 1) against the same TorchScript forward alone in this
//! process at the same intra-op threads, taking turns in one run; then what parsing the
//! request costs, binary tensors against JSON ones, on the server's own decoder.
//!
//! Two models: the int8 MobileNetV2 of the assets (a short forward, so the server's
//! fixed costs show), and a ResNet-18 fp32 built and traced here with tch's own
//! definition (random weights: the time of a forward does not depend on them).
//!
//! `cargo bench --bench v2` (`make bench-v2`). Goals (issue 14): the v2 tensor path
//! ≤ 1.05× the forward; binary at least 5× cheaper to parse than JSON.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use wasmserve::frontend::kserve::codec::decode_request;

const THREADS: usize = 1;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The declared tensors of a `[3, 224, 224]` → `[classes]` classifier.
fn declared(classes: usize) -> String {
    format!(
        "input:\n  - name: input__0\n    data_type: TYPE_FP32\n    dims: [3, 224, 224]\noutput:\n  - name: output__0\n    data_type: TYPE_FP32\n    dims: [{classes}]\n"
    )
}

/// Medians of each way, and the core's mean over the timed rounds.
struct Figures {
    forward: Duration,
    lane_path: Duration,
    server: Duration,
    core: Duration,
}

/// Serves `model` and times, in turns: a v2 binary inference through the server; the
/// forward alone in this process; the lane's data path in this process.
fn measure(
    model: &Path,
    classes: usize,
    rounds: usize,
    per_round: usize,
    values: &[f32],
) -> Figures {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = serde_json::to_vec(&json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "parameters": {"binary_data_output": true},
    }))
    .unwrap();
    let body = [header.clone(), raw.clone()].concat();

    let store = ModelStore::new();
    store.archive_with_config("m", model, "base_handler", &[], Some(&declared(classes)));
    let mut server = Server::start(
        store.path(),
        &["m=m.mar"],
        &format!("intra_op_threads={THREADS}"),
    );
    // One keep-alive connection; the request's bytes made once (tests/common).
    let conn = std::cell::RefCell::new(common::keepalive::KeepAlive::connect(&server.base));
    let request = conn.borrow().request(
        "/v2/models/m/infer",
        &[
            &format!("Inference-Header-Content-Length: {}", header.len()),
            "Content-Type: application/octet-stream",
        ],
        &body,
    );
    let infer = || {
        std::hint::black_box(conn.borrow_mut().send(&request).body);
    };
    // The core's summed latency and count of predictions.
    let counters = |server: &mut Server| {
        let text = common::client()
            .get(server.metrics_url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let m = |name: &str| {
            wasmserve::metrics::sample(&text, name, "model_name=\"m\"").unwrap_or(f64::NAN)
        };
        (
            m("ts_inference_latency_microseconds"),
            m("ts_inference_requests_total"),
        )
    };
    let (srv, fwd, lane, before) = std::thread::scope(|s| {
        // The in-process forwards run on a thread of their own at THREADS, as a lane does.
        let (to_fwd, fwd_rx) = std::sync::mpsc::channel::<bool>();
        let (fwd_done, from_fwd) = std::sync::mpsc::channel::<Duration>();
        let raw_in = raw.clone();
        s.spawn(move || {
            tch::set_num_threads(THREADS as i32);
            let mut plain = tch::CModule::load(model).unwrap();
            plain.set_eval();
            let ours = wasmserve::model::Model::load(model, tch::Device::Cpu).unwrap();
            let x = tch::Tensor::from_slice(values).view([1, 3, 224, 224]);
            for lane_path in fwd_rx {
                let t = Instant::now();
                if lane_path {
                    // The lane's data path: a fresh buffer lent to libtorch, the
                    // outputs copied out.
                    let mut input = wasmserve::sandbox::Tensor {
                        name: String::new(),
                        dtype: wasmserve::sandbox::Dtype::Float32,
                        shape: vec![1, 3, 224, 224],
                        data: raw_in.clone(),
                    };
                    // SAFETY: `input` outlives the borrowed tensor and the outputs.
                    let arg = unsafe { wasmserve::model::borrow_torch(&mut input) }.unwrap();
                    let out = ours.forward(&[arg]).unwrap();
                    std::hint::black_box(wasmserve::model::from_torch("", &out[0].1).unwrap());
                } else {
                    let out = tch::no_grad(|| plain.forward_ts(&[&x])).unwrap();
                    std::hint::black_box(Vec::<f32>::try_from(out.view([-1])).unwrap());
                }
                fwd_done.send(t.elapsed()).unwrap();
            }
        });
        let forward = |lane_path: bool| {
            to_fwd.send(lane_path).unwrap();
            from_fwd.recv().unwrap()
        };
        for _ in 0..5 {
            infer();
            forward(false);
            forward(true);
        }
        let before = counters(&mut server);
        let (mut srv, mut fwd, mut lane) = (Vec::new(), Vec::new(), Vec::new());
        let timed = |f: &dyn Fn()| {
            let t = Instant::now();
            f();
            t.elapsed()
        };
        // Each request in turn with its two in-process twins, so that the machine's
        // drift falls on all three alike.
        for _ in 0..rounds {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..per_round {
                a.push(timed(&infer));
                b.push(forward(false));
                c.push(forward(true));
            }
            srv.push(median(a));
            fwd.push(median(b));
            lane.push(median(c));
        }
        drop(to_fwd);
        (srv, fwd, lane, before)
    });
    let after = counters(&mut server);
    Figures {
        forward: median(fwd),
        lane_path: median(lane),
        server: median(srv),
        core: Duration::from_secs_f64((after.0 - before.0) / (after.1 - before.1) / 1e6),
    }
}

fn main() {
    let values = v2_input_values();
    let dir = tempfile::tempdir().unwrap();
    let resnet = {
        tch::manual_seed(0);
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
        // Weights as constants of the traced graph, as a saved model has them.
        vs.freeze();
        let x = tch::Tensor::from_slice(&values).view([1, 3, 224, 224]);
        traced_model(dir.path(), "resnet18.pt", &[x], |xs| {
            vec![tch::nn::ModuleT::forward_t(&net, &xs[0], false)]
        })
    };
    let models = [
        (
            "mobilenet_v2_quantized.pt (int8)",
            asset("models/mobilenet_v2_quantized.pt"),
            7,
            30,
        ),
        ("ResNet-18 fp32 (traced here)", resnet, 5, 10),
    ];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "[1, 3, 224, 224] FP32, concurrency 1, {THREADS} intra-op thread(s); medians of rounds, \
         the server and the in-process forwards in turns"
    );
    println!(
        "| model | forward alone ms | lane's data path in process | v2 infer through the server | of which inside the core (mean) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, path, rounds, per_round) in models {
        let f = measure(&path, 1000, rounds, per_round, &values);
        println!(
            "| {name} | {:.2} | {:.2} ms, {:.3}× | {:.2} ms, **{:.3}×** | {:.2} ms, {:.3}× |",
            ms(f.forward),
            ms(f.lane_path),
            ratio(f.lane_path, f.forward),
            ms(f.server),
            ratio(f.server, f.forward),
            ms(f.core),
            ratio(f.core, f.forward),
        );
    }

    // Parsing alone, on the server's decoder.
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = serde_json::to_vec(&json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
    }))
    .unwrap();
    let binary_body = [header.clone(), raw].concat();
    let json_body = serde_json::to_vec(&json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": values}],
    }))
    .unwrap();
    let parse = |body: &[u8], header_length: Option<usize>| {
        median(
            (0..50)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(decode_request(body, header_length).unwrap());
                    t.elapsed()
                })
                .collect(),
        )
    };
    let (bin, js) = (
        parse(&binary_body, Some(header.len())),
        parse(&json_body, None),
    );
    println!();
    println!("| parse a [1, 3, 224, 224] FP32 request | bytes | ms | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| binary tensor data | {} | {:.3} | 1.00 |",
        binary_body.len(),
        ms(bin)
    );
    println!(
        "| JSON `data` | {} | {:.3} | **{:.0}× binary** |",
        json_body.len(),
        ms(js),
        ratio(js, bin)
    );
}
