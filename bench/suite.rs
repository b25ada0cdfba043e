//! `make bench`: wasmserve against the same pipeline done natively in-process, against
//! TorchServe 0.12 on the same machine, models and load generator, and against itself
//! with and without batching. Prints one table per question and writes them all to
//! `bench/RESULTS.md`. Every ratio is measured within this one run.
//!
//! - overhead: kitten, concurrency 1, end to end through wasmserve vs preprocess +
//!   forward + postprocess natively in this process (same code, same thread count);
//! - throughput: `ab -k` (bench/torchserve/load.sh) at concurrency 1, 4 and 16 against
//!   wasmserve (its defaults) and TorchServe (tuned: one thread per worker; and its
//!   default), same number of workers (one per core), for `mobilenet_v2_quantized.pt` and a
//!   float32 ResNet-18 with random weights (bench/torchserve/models.sh);
//! - batching: the ResNet-18 at concurrency 16, `batch_size` 1 vs 8;
//! - memory: RSS of the whole server with 1 and 4 workers (TorchServe: all its processes);
//! - cold start: from launching the server to its first successful prediction;
//! - handler instantiation: a fresh `image_classifier` instance.
//!
//! TorchServe is installed into `~/.cache/wasmserve` by bench/torchserve/setup.sh on the
//! first run (a few GB; later runs reuse it). Both servers run without token
//! authorization (ab sends no header). `WASMSERVE_BENCH_QUICK=1` cuts request counts for
//! a trial run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn quick() -> bool {
    std::env::var_os("WASMSERVE_BENCH_QUICK").is_some()
}

/// Scales request counts down for a trial run.
fn n(full: usize) -> usize {
    if quick() { (full / 5).max(20) } else { full }
}

fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("bench/torchserve").join(name))
        .args(args)
        .env("WASMSERVE_ASSETS", assets())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"));
    assert!(out.status.success(), "{name} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One load run: requests per second, p50 and p99 in ms, failures.
#[derive(Clone, Copy, Debug)]
struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    failed: u64,
}

fn load(url: &str, body: &Path, concurrency: usize, requests: usize) -> Load {
    let line = script(
        "load.sh",
        &[
            url,
            body.to_str().unwrap(),
            &concurrency.to_string(),
            &requests.to_string(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("load.sh printed {line:?}: {e}"));
    Load {
        rps: v["rps"].as_f64().unwrap(),
        p50: v["p50_ms"].as_f64().unwrap(),
        p99: v["p99_ms"].as_f64().unwrap(),
        failed: v["failed"].as_u64().unwrap(),
    }
}

/// Resident memory of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The models both servers serve: (name, wasmserve archive store, TorchServe store).
struct Models {
    wasmserve: ModelStore,
    torchserve_store: PathBuf,
    resnet18: PathBuf,
}

fn models() -> Models {
    let cache = std::env::var_os("WASMSERVE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wasmserve"))
        .join("bench");
    std::fs::create_dir_all(&cache).unwrap();
    script("models.sh", &[cache.to_str().unwrap()]);
    let store = ModelStore::new();
    store.mobilenet();
    let labels = asset("images/index_to_name.json");
    let resnet18 = cache.join("resnet18.pt");
    store.archive("resnet18", &resnet18, "image_classifier", &[&labels]);
    store.archive_with_config(
        "resnet18b8",
        &resnet18,
        "image_classifier",
        &[&labels],
        Some("batchSize: 8\nmaxBatchDelay: 20\n"),
    );
    Models {
        wasmserve: store,
        torchserve_store: cache.join("ts-store"),
        resnet18,
    }
}

/// A TorchServe instance started by bench/torchserve/serve.sh, stopped on drop.
struct TorchServe {
    work: tempfile::TempDir,
    port: u16,
    /// Launch to all workers ready, as serve.sh measured it.
    ready: Duration,
}

impl TorchServe {
    fn start(store: &Path, workers: usize, mode: &str, models: &str) -> TorchServe {
        let work = tempfile::tempdir().unwrap();
        let port = 18000 + (std::process::id() % 1000) as u16 * 3;
        let secs = script(
            "serve.sh",
            &[
                "start",
                store.to_str().unwrap(),
                work.path().to_str().unwrap(),
                &workers.to_string(),
                mode,
                &port.to_string(),
                models,
            ],
        );
        let ready = secs
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .unwrap_or_default();
        TorchServe { work, port, ready }
    }

    fn url(&self, model: &str) -> String {
        format!("http://127.0.0.1:{}/predictions/{model}", self.port)
    }

    fn rss_mib(&self) -> f64 {
        script("serve.sh", &["rss", self.work.path().to_str().unwrap()])
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
            / 1024.0
    }
}

impl Drop for TorchServe {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("bench/torchserve/serve.sh"))
            .args(["stop", self.work.path().to_str().unwrap()])
            .status();
    }
}

fn wasmserve(store: &Path, models: &[&str], workers: usize) -> Server {
    Server::start(
        store,
        models,
        &format!("default_workers_per_model={workers}"),
    )
}

fn post_ok(url: &str, body: &[u8]) -> bool {
    client()
        .post(url)
        .body(body.to_vec())
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// Launch to first successful prediction.
fn wasmserve_cold_start(store: &Path, kitten: &[u8]) -> Duration {
    let started = Instant::now();
    let server = wasmserve(store, &["mobilenet.mar"], 2);
    let url = server.url("/predictions/mobilenet");
    while !post_ok(&url, kitten) {
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.text, "{}", s.as_ref());
    }
}

fn main() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut r = Report {
        text: String::new(),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    eprintln!("== installing TorchServe (cached after the first run) and making the models");
    let venv = script("setup.sh", &[]);
    let m = models();
    let kitten_path = asset("images/kitten.jpg");
    let kitten = std::fs::read(&kitten_path).unwrap();
    r.line("# wasmserve benchmark results");
    r.line("");
    r.line(format!(
        "`make bench`, {}; {cores} cores ({cpu}); TorchServe 0.12.0 in {venv}. \
         Load generator: ApacheBench `ab -k` (bench/torchserve/load.sh), kitten.jpg, \
         after a warm-up. Workers: one per core on both servers.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    ));
    r.line("");

    // 1. Overhead at concurrency 1.
    eprintln!("== overhead");
    let (e2e, native, forward, parts) = overhead(&m.wasmserve, &kitten);
    r.line("## Overhead: one kitten prediction at concurrency 1 (median of 100)");
    r.line("");
    r.line("| path | ms |");
    r.line("|---|---:|");
    r.line(format!(
        "| forward alone (libtorch in process) | {:.2} |",
        ms(forward)
    ));
    r.line(format!(
        "| preprocess + forward + postprocess, native in process | {:.2} |",
        ms(native)
    ));
    r.line(format!(
        "| end to end through wasmserve (HTTP, sandboxed handler) | {:.2} |",
        ms(e2e)
    ));
    r.line(format!(
        "| — of which, inside the server: queue {:.2}, handler (pre+post) {:.2}, forward {:.2}, lane {:.2} |  |",
        parts[0], parts[1], parts[2], parts[3]
    ));
    let ratio = ms(e2e) / ms(native);
    r.line("");
    r.line(format!(
        "**end to end / native = {ratio:.2}** (goal ≤ 1.10: {})",
        if ratio <= 1.10 { "met" } else { "not met" }
    ));
    r.line("");

    // 2. Throughput, and 3. batching.
    let plan: [(&str, &str, [usize; 3]); 2] = [
        (
            "mobilenet",
            "mobilenet_v2_quantized.pt (int8)",
            [n(300), n(600), n(800)],
        ),
        (
            "resnet18",
            "ResNet-18 float32, random weights",
            [n(60), n(120), n(160)],
        ),
    ];
    r.line(format!(
        "## Throughput against TorchServe ({cores} workers each)"
    ));
    r.line("");
    r.line("| model | server | c | req/s | p50 ms | p99 ms | failed |");
    r.line("|---|---|---:|---:|---:|---:|---:|");
    let mut best: Vec<(String, f64, f64, f64, f64)> = Vec::new(); // model, ws rps, ts rps, ws p99, ts p99 at c=16
    let mut resnet_b1_c16 = None;
    for (model, label, counts) in plan {
        let mut rows: Vec<(String, [Load; 3])> = Vec::new();
        eprintln!("== {model}: wasmserve");
        {
            let server = wasmserve(m.wasmserve.path(), &[&format!("{model}.mar")], cores);
            let url = server.url(&format!("/predictions/{model}"));
            let runs = [1, 4, 16].map(|c| {
                load(
                    &url,
                    &kitten_path,
                    c,
                    counts[[1, 4, 16].iter().position(|&x| x == c).unwrap()],
                )
            });
            rows.push(("wasmserve".into(), runs));
        }
        for mode in ["tuned", "default"] {
            eprintln!("== {model}: TorchServe {mode}");
            let ts = TorchServe::start(&m.torchserve_store, cores, mode, &format!("{model}.mar"));
            let url = ts.url(model);
            // TorchServe's default threading runs at a few requests per second on a small
            // machine: fewer requests keep `make bench` within its time.
            let counts = if mode == "default" {
                counts.map(|c| (c / 8).max(20))
            } else {
                counts
            };
            let runs = [1, 4, 16].map(|c| {
                load(
                    &url,
                    &kitten_path,
                    c,
                    counts[[1, 4, 16].iter().position(|&x| x == c).unwrap()],
                )
            });
            let name = if mode == "tuned" {
                "TorchServe (OMP_NUM_THREADS=1)".to_string()
            } else {
                "TorchServe (its default threads)".to_string()
            };
            rows.push((name, runs));
        }
        for (server, runs) in &rows {
            for (c, l) in [1, 4, 16].iter().zip(runs) {
                r.line(format!(
                    "| {label} | {server} | {c} | {:.1} | {:.1} | {:.1} | {} |",
                    l.rps, l.p50, l.p99, l.failed
                ));
            }
        }
        let (ws, ts) = (&rows[0].1, &rows[1].1);
        best.push((
            label.to_string(),
            ws[2].rps,
            ts[2].rps,
            ws[2].p99,
            ts[2].p99,
        ));
        for (c, (w, t)) in [1, 4, 16].iter().zip(ws.iter().zip(ts)) {
            r.line(format!(
                "| {label} | **wasmserve / TorchServe tuned** | {c} | **{:.2}×** | {:.2}× | {:.2}× | |",
                w.rps / t.rps,
                w.p50 / t.p50,
                w.p99 / t.p99
            ));
        }
        if model == "resnet18" {
            resnet_b1_c16 = Some(ws[2]);
        }
    }
    r.line("");
    for (label, w, t, wp, tp) in &best {
        r.line(format!(
            "- {label}, c=16: {:.2}× TorchServe's throughput (goal ≥ 2×: {}), p99 {:.0} vs {:.0} ms (goal lower: {})",
            w / t,
            if w / t >= 2.0 { "met" } else { "not met" },
            wp,
            tp,
            if wp < tp { "met" } else { "not met" }
        ));
    }
    r.line("");

    eprintln!("== batching");
    let b8 = {
        let server = wasmserve(m.wasmserve.path(), &["resnet18b8.mar"], cores);
        load(
            &server.url("/predictions/resnet18b8"),
            &kitten_path,
            16,
            n(160),
        )
    };
    let b1 = resnet_b1_c16.unwrap();
    r.line("## Batching: ResNet-18 float32 at concurrency 16");
    r.line("");
    r.line("| batch_size | req/s | p50 ms | p99 ms | failed |");
    r.line("|---:|---:|---:|---:|---:|");
    r.line(format!(
        "| 1 | {:.1} | {:.1} | {:.1} | {} |",
        b1.rps, b1.p50, b1.p99, b1.failed
    ));
    r.line(format!(
        "| 8 (max_batch_delay 20 ms) | {:.1} | {:.1} | {:.1} | {} |",
        b8.rps, b8.p50, b8.p99, b8.failed
    ));
    r.line(format!(
        "\nbatch 8 / batch 1 throughput = {:.2}\n",
        b8.rps / b1.rps
    ));

    // 4. Memory.
    eprintln!("== memory");
    r.line("## Memory: RSS of the whole server, mobilenet_v2_quantized, after 20 predictions");
    r.line("");
    r.line("| workers | wasmserve MiB | TorchServe MiB (all processes) | ratio |");
    r.line("|---:|---:|---:|---:|");
    for workers in [1, 4] {
        let ws_rss = {
            let server = wasmserve(m.wasmserve.path(), &["mobilenet.mar"], workers);
            let url = server.url("/predictions/mobilenet");
            warm(&url, &kitten, workers);
            rss_mib(server.pid())
        };
        let ts_rss = {
            let ts = TorchServe::start(&m.torchserve_store, workers, "tuned", "mobilenet.mar");
            warm(&ts.url("mobilenet"), &kitten, workers);
            ts.rss_mib()
        };
        r.line(format!(
            "| {workers} | {ws_rss:.0} | {ts_rss:.0} | {:.1}× smaller |",
            ts_rss / ws_rss
        ));
    }
    r.line("");

    // 5. Cold start.
    eprintln!("== cold start");
    let ws_cold = wasmserve_cold_start(m.wasmserve.path(), &kitten);
    let ts_cold = {
        let started = Instant::now();
        let ts = TorchServe::start(&m.torchserve_store, cores, "tuned", "mobilenet.mar");
        let url = ts.url("mobilenet");
        while !post_ok(&url, &kitten) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = ts.ready;
        started.elapsed()
    };
    r.line(format!(
        "## Cold start: launch to the first successful prediction, mobilenet, {cores} workers"
    ));
    r.line("");
    r.line("| server | s |");
    r.line("|---|---:|");
    r.line(format!("| wasmserve | {:.2} |", ws_cold.as_secs_f64()));
    r.line(format!("| TorchServe | {:.2} |", ts_cold.as_secs_f64()));
    r.line(format!(
        "\nwasmserve starts {:.1}× faster.\n",
        ts_cold.as_secs_f64() / ws_cold.as_secs_f64()
    ));

    // 6. Handler instantiation.
    let inst = instantiation();
    r.line("## Handler instantiation");
    r.line("");
    r.line(format!(
        "A fresh `image_classifier` instance (instantiate + init, pooling allocator): {:.1} µs (median of 200).",
        inst.as_secs_f64() * 1e6
    ));
    let _ = m.resnet18;
    std::fs::write(repo().join("bench/RESULTS.md"), &r.text).unwrap();
    eprintln!("== written to bench/RESULTS.md");
}

fn warm(url: &str, kitten: &[u8], workers: usize) {
    let threads: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (url, body) = (url.to_string(), kitten.to_vec());
            std::thread::spawn(move || {
                for _ in 0..(20 / workers.max(1)).max(1) {
                    assert!(post_ok(&url, &body));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// (end to end, native pipeline, forward alone, server-side parts in ms: queue,
/// handler, forward, lane).
fn overhead(store: &ModelStore, kitten: &[u8]) -> (Duration, Duration, Duration, [f64; 4]) {
    const WARMUP: usize = 20;
    const RUNS: usize = 100;
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut server = wasmserve(store.path(), &["mobilenet.mar"], cores);
    let http = client();
    let url = server.url("/predictions/mobilenet");
    let metrics_url = server.metrics_url(
        "/metrics?name[]=QueueTime&name[]=HandlerTime&name[]=PredictionTime&name[]=WorkerThreadTime",
    );
    let mut parts: Vec<[f64; 4]> = Vec::new();
    let mut times = Vec::new();
    for i in 0..WARMUP + RUNS {
        let t = Instant::now();
        let resp = http.post(&url).body(kitten.to_vec()).send().unwrap();
        assert!(resp.status().is_success());
        resp.bytes().unwrap();
        let d = t.elapsed();
        if i >= WARMUP {
            times.push(d);
            let text = http.get(&metrics_url).send().unwrap().text().unwrap();
            let g = |n: &str| wasmserve::metrics::sample(&text, n, "").unwrap_or(f64::NAN);
            parts.push([
                g("QueueTime"),
                g("HandlerTime"),
                g("PredictionTime"),
                g("WorkerThreadTime"),
            ]);
        }
    }
    drop(server);
    times.sort();
    let e2e = times[RUNS / 2];
    let median_of = |i: usize| {
        let mut v: Vec<f64> = parts.iter().map(|p| p[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let parts = [median_of(0), median_of(1), median_of(2), median_of(3)];

    // The same work natively, with the threads a lane's forward gets.
    let threads = (cores / cores.max(1)).max(1);
    tch::set_num_threads(threads as i32);
    let mut model = tch::CModule::load(asset("models/mobilenet_v2_quantized.pt")).unwrap();
    model.set_eval();
    let tensor = wasmserve_handler::vision::imagenet_transform(kitten).unwrap();
    let input = tch::Tensor::from_slice(&tensor.to_vec::<f32>().unwrap()).view([1, 3, 224, 224]);
    let forward = median_time(WARMUP, RUNS, || {
        let _ = std::hint::black_box(tch::no_grad(|| model.forward_ts(&[&input])).unwrap());
    });
    let labels = wasmserve_handler::output::LabelMap::from_json(
        &std::fs::read(asset("images/index_to_name.json")).unwrap(),
    )
    .unwrap();
    let native = median_time(WARMUP, RUNS, || {
        let t = wasmserve_handler::vision::imagenet_transform(kitten).unwrap();
        let x = tch::Tensor::from_slice(&t.to_vec::<f32>().unwrap()).view([1, 3, 224, 224]);
        let logits = tch::no_grad(|| model.forward_ts(&[x])).unwrap();
        let logits: Vec<f32> = logits.view([-1]).try_into().unwrap();
        let probs = wasmserve_handler::output::softmax(&logits);
        let top: serde_json::Map<String, serde_json::Value> =
            wasmserve_handler::output::top_k(&probs, 5)
                .into_iter()
                .map(|(i, p)| (labels.label(i), serde_json::json!(p)))
                .collect();
        std::hint::black_box(serde_json::to_vec(&top).unwrap());
    });
    (e2e, native, forward, parts)
}

fn instantiation() -> Duration {
    use wasmserve::runtime::{Context, HandlerRuntime, Limits, Sandbox};
    let runtime = HandlerRuntime::new(Limits::default(), None).unwrap();
    let component = runtime
        .compile(wasmserve::builtin::component("image_classifier").unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(
        dir.path().to_path_buf(),
        Context {
            model_name: "bench".into(),
            model_version: "1.0".into(),
            manifest: "{}".into(),
            config: "{}".into(),
            batch_size: 1,
            device: "cpu".into(),
        },
    );
    median_time(20, 200, || {
        std::hint::black_box(component.instantiate(&sandbox).unwrap());
    })
}
