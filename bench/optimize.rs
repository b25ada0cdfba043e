//! `jitOptimize` (issue 19, item 4): the forward of ResNet-18 fp32 (traced here, random
//! weights) and of the int8 MobileNetV2 of the assets, plain against frozen against
//! `optimize_for_inference` against fused by oneDNN Graph, in this process at 1 and at
//! all intra-op threads, taking turns so that the machine's drift falls on all four
//! alike; then ResNet-18 served plain, with `jitOptimize: inference` and with
//! `jitOptimize: fuse` side by side on one server (KServe v2 binary tensors, c=1 and
//! c=4, in turns).
//!
//! `cargo bench --bench optimize` (`make bench-optimize`; about three minutes on 2
//! cores).

#[path = "../tests/common/mod.rs"]
mod common;
mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use wasmserve::model::{JitOptimize, Model};

const WAYS: [JitOptimize; 4] = [
    JitOptimize::Off,
    JitOptimize::Freeze,
    JitOptimize::Inference,
    JitOptimize::Fuse,
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median forward time of `model` loaded each way, at `threads`, in turns.
fn forwards(model: &Path, threads: usize, rounds: usize) -> Vec<Duration> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tch::set_num_threads(threads as i32);
            let x = tch::Tensor::from_slice(&v2_input_values()).view([1, 3, 224, 224]);
            let models: Vec<Model> = WAYS
                .iter()
                .map(|&w| Model::load_with(model, tch::Device::Cpu, w).unwrap())
                .collect();
            let mut times = vec![Vec::new(); WAYS.len()];
            for round in 0..rounds + 3 {
                for (i, m) in models.iter().enumerate() {
                    let t = Instant::now();
                    std::hint::black_box(m.forward(std::slice::from_ref(&x)).unwrap());
                    if round >= 3 {
                        times[i].push(t.elapsed());
                    }
                }
            }
            times.into_iter().map(median).collect()
        })
        .join()
        .unwrap()
    })
}

fn resnet18(dir: &Path) -> std::path::PathBuf {
    tch::manual_seed(0);
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
    vs.freeze();
    let x = tch::Tensor::from_slice(&v2_input_values()).view([1, 3, 224, 224]);
    traced_model(dir, "resnet18.pt", &[x], |xs| {
        vec![tch::nn::ModuleT::forward_t(&net, &xs[0], false)]
    })
}

/// Requests per second of `clients` keep-alive clients on `model` for `secs`.
fn throughput(server: &Server, model: &str, clients: usize, secs: f64) -> f64 {
    let raw: Vec<u8> = v2_input_values()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "parameters": {"binary_data_output": true},
    }))
    .unwrap();
    let body = [header.clone(), raw].concat();
    let base = server.base.as_str();
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let mut conn = common::keepalive::KeepAlive::connect(base);
                    let request = conn.request(
                        &format!("/v2/models/{model}/infer"),
                        &[
                            &format!("Inference-Header-Content-Length: {}", header.len()),
                            "Content-Type: application/octet-stream",
                        ],
                        &body,
                    );
                    let mut n = 0;
                    while start.elapsed().as_secs_f64() < secs {
                        std::hint::black_box(conn.send(&request).body);
                        n += 1;
                    }
                    n
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let resnet = resnet18(dir.path());
    let mobilenet = asset("models/mobilenet_v2_quantized.pt");
    let cores = wasmserve::config::num_cores();
    let mut r = report::Report::new("optimize");
    r.line("## jitOptimize: a faster forward, still the user's model (`make bench-optimize`)");
    r.line("");
    r.line(
        "Forward of one [1, 3, 224, 224], medians, plain / freeze / inference / fuse in \
         turns (the fused graph after its profiling and compiling calls).",
    );
    r.line("");
    r.line(
        "| model | threads | plain ms | freeze ms | inference ms | fuse ms | inference / plain | fuse / plain |",
    );
    r.line("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, key, file, rounds) in [
        ("ResNet-18 fp32", "resnet18", &resnet, 30),
        ("MobileNetV2 int8", "mobilenet", &mobilenet, 100),
    ] {
        for threads in [1, cores] {
            let t = forwards(file, threads, rounds);
            let per_plain = |i: usize| t[i].as_secs_f64() / t[0].as_secs_f64();
            r.line(format!(
                "| {name} | {threads} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                ms(t[0]),
                ms(t[1]),
                ms(t[2]),
                ms(t[3]),
                per_plain(2),
                per_plain(3),
            ));
            if threads == 1 {
                r.figure(format!("{key}.plain_ms"), ms(t[0]));
                r.figure(format!("{key}.inference_ms"), ms(t[2]));
                r.figure(format!("{key}.fuse_ms"), ms(t[3]));
            }
        }
    }

    let store = ModelStore::new();
    let served = [
        ("plain", "off"),
        ("inference", "inference"),
        ("fuse", "fuse"),
    ];
    for (name, jit) in served {
        store.archive_with_config(
            name,
            &resnet,
            "base_handler",
            &[],
            Some(&format!("{MOBILENET_TENSORS}jitOptimize: {jit}\n")),
        );
    }
    let server = Server::start(
        store.path(),
        &["plain.mar", "inference.mar", "fuse.mar"],
        "",
    );
    for (model, _) in served {
        throughput(&server, model, 2, 2.0);
    }
    r.line("");
    r.line(format!(
        "ResNet-18 served ({cores} workers each, the server's defaults), KServe v2 binary, \
         req/s, the mean of 3 turns of 5 s."
    ));
    r.line("");
    r.line("| clients | plain | jitOptimize: inference | jitOptimize: fuse | inference / plain | fuse / plain |");
    r.line("|---:|---:|---:|---:|---:|---:|");
    for clients in [1, 4] {
        let mut rps = vec![Vec::new(); served.len()];
        for _ in 0..3 {
            for (i, (model, _)) in served.iter().enumerate() {
                rps[i].push(throughput(&server, model, clients, 5.0));
            }
        }
        let mean: Vec<f64> = rps.iter().map(|v| v.iter().sum::<f64>() / 3.0).collect();
        r.line(format!(
            "| {clients} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            mean[0],
            mean[1],
            mean[2],
            mean[1] / mean[0],
            mean[2] / mean[0]
        ));
    }
    r.line("");
    r.save();
}
