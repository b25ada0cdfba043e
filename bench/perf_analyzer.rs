//! The third-party view (issue 19, item 6): Triton's `perf_analyzer` (installed by the
//! tests' client setup, `tests/common/clients.rs`) drives the KServe v2 tensor path of
//! MobileNetV2 int8 and ResNet-18 fp32 (traced here, random weights) over HTTP, at
//! concurrency 1, 4 and 16, and this prints its throughput and p99 latency.
//!
//! `cargo bench --bench perf_analyzer` (`make bench-perf-analyzer`; about two minutes).

#[path = "../tests/common/mod.rs"]
mod common;
mod report;

use std::process::Command;

use common::*;

/// perf_analyzer's throughput (infer/s) and p99 latency (ms) at one concurrency.
fn measure(url: &str, model: &str, concurrency: usize) -> (f64, f64) {
    let level = format!("{concurrency}:{concurrency}");
    let out = Command::new(&common::clients::clients().perf_analyzer)
        .args([
            "-m",
            model,
            "-u",
            url,
            "-i",
            "http",
            "--concurrency-range",
            &level,
        ])
        .args([
            "--measurement-interval",
            "4000",
            "--max-trials",
            "5",
            "-b",
            "1",
        ])
        // Shared machines drift: take what the windows measured, whatever the spread.
        .args(["--percentile", "99", "--stability-percentage", "1000"])
        .output()
        .expect("running perf_analyzer");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.contains("error"),
        "perf_analyzer failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number = |pattern: &str| {
        regex::Regex::new(pattern)
            .unwrap()
            .captures_iter(&text)
            .last()
            .and_then(|c| c[1].parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {pattern} in {text}"))
    };
    (
        number(r"Throughput: ([0-9.]+) infer/sec"),
        number(r"p99 latency: ([0-9]+) usec") / 1e3,
    )
}

fn main() {
    let store = ModelStore::new();
    store.mobilenet_with_config(Some(MOBILENET_TENSORS));
    tch::manual_seed(0);
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
    vs.freeze();
    let x = tch::Tensor::from_slice(&v2_input_values()).view([1, 3, 224, 224]);
    let resnet = traced_model(store.path(), "resnet18.pt", &[x], |xs| {
        vec![tch::nn::ModuleT::forward_t(&net, &xs[0], false)]
    });
    store.archive_with_config(
        "resnet18",
        &resnet,
        "base_handler",
        &[],
        Some(MOBILENET_TENSORS),
    );
    let server = Server::start(store.path(), &["mobilenet.mar", "resnet18.mar"], "");
    let url = server.base.trim_start_matches("http://").to_string();
    let mut r = report::Report::new("perf_analyzer");
    r.line("## The third-party view: Triton's perf_analyzer (`make bench-perf-analyzer`)");
    r.line("");
    r.line(format!(
        "perf_analyzer -i http, KServe v2, batch 1, the server's defaults ({} workers).",
        wasmserve::config::num_cores()
    ));
    r.line("");
    r.line("| model | concurrency | infer/s | p99 ms |");
    r.line("|---|---:|---:|---:|");
    for model in ["mobilenet", "resnet18"] {
        for c in [1, 4, 16] {
            let (throughput, p99) = measure(&url, model, c);
            r.line(format!("| {model} | {c} | {throughput:.1} | {p99:.1} |"));
            r.figure(format!("{model}.rps.c{c}"), throughput);
            r.figure(format!("{model}.p99.c{c}"), p99);
        }
    }
    r.line("");
    r.save();
}
