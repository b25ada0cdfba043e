//! `make bench`: wasmserve against the same pipeline done natively in-process, against
//! TorchServe 0.12 on the same machine, models and load generator, and against itself
//! with and without batching. Prints one table per question and keeps them for
//! `bench/RESULTS.md` (bench/report.rs). Every ratio is measured within this one run.
//!
//! - overhead: kitten, concurrency 1, end to end through wasmserve vs preprocess +
//!   forward + postprocess natively in this process (same code, same thread count);
//! - throughput: `ab -k` (bench/torchserve/load.sh) at concurrency 1, 4 and 16 against
//!   wasmserve (its defaults) and TorchServe (tuned: one thread per worker; and its
//!   default), same number of workers (one per core), for `mobilenet_v2_quantized.pt` and a
//!   float32 ResNet-18 with random weights (bench/torchserve/models.sh), with the ceiling
//!   that the model's forward alone sets; the ResNet-18 also with `jitOptimize: fuse`
//!   in the same turns;
//! - batching: the ResNet-18 at concurrency 16, `batch_size` 1 vs 8;
//!
//! The machines this runs on are shared: their speed drifts by a quarter from one
//! minute to the next. So what is compared runs side by side and takes turns (request
//! by request for the overhead, in rounds of load for throughput and batching), and
//! each ratio is the median of the turns' ratios, printed with its range.
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
mod report;
mod ts;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use report::Report;
use ts::{TorchServe, script};

fn quick() -> bool {
    std::env::var_os("WASMSERVE_BENCH_QUICK").is_some()
}

/// Scales request counts down for a trial run.
fn n(full: usize) -> usize {
    if quick() { (full / 5).max(20) } else { full }
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

/// Rounds of load per server when servers take turns.
const ROUNDS: usize = 3;

/// Rounds for batching, whose turns vary the most.
const BATCH_ROUNDS: usize = 5;

/// Load on each of `urls` in turn, `rounds` times over, `requests` per run, then
/// `each_round`: so that a drift of the machine's speed falls on every server (and on
/// what `each_round` measures) alike. `[server][round]`.
fn interleaved(
    urls: &[String],
    body: &Path,
    (concurrency, requests): (usize, usize),
    rounds: usize,
    mut each_round: impl FnMut(),
) -> Vec<Vec<Load>> {
    let mut runs = vec![Vec::new(); urls.len()];
    for _ in 0..rounds {
        for (url, runs) in urls.iter().zip(&mut runs) {
            runs.push(load(url, body, concurrency, requests));
        }
        each_round();
    }
    runs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Load {
    /// The median of each figure over rounds (failures: their sum).
    fn median(rounds: &[Load]) -> Load {
        let of = |f: fn(&Load) -> f64| median(rounds.iter().map(f).collect());
        Load {
            rps: of(|l| l.rps),
            p50: of(|l| l.p50),
            p99: of(|l| l.p99),
            failed: rounds.iter().map(|l| l.failed).sum(),
        }
    }
}

/// A ratio between two servers measured round by round: the median and the range.
struct Ratio {
    median: f64,
    min: f64,
    max: f64,
}

impl Ratio {
    fn of(a: &[Load], b: &[Load], figure: fn(&Load) -> f64) -> Ratio {
        Ratio::over(
            a.iter()
                .zip(b)
                .map(|(a, b)| figure(a) / figure(b))
                .collect(),
        )
    }

    /// The median and range of ratios measured round by round.
    fn over(ratios: Vec<f64>) -> Ratio {
        Ratio {
            median: median(ratios.clone()),
            min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}× ({:.2}–{:.2})", self.median, self.min, self.max)
    }
}

/// A model's forward in this process on one thread (what one lane gets when there is a
/// worker per core), on a batch of random 3×224×224 inputs.
struct Forward {
    module: tch::CModule,
    input: tch::Tensor,
    batch: u32,
}

impl Forward {
    fn load(model: &Path, batch: u32) -> Forward {
        tch::set_num_threads(1);
        let mut module = tch::CModule::load(model).unwrap();
        module.set_eval();
        let input = tch::Tensor::rand(
            [batch as i64, 3, 224, 224],
            (tch::Kind::Float, tch::Device::Cpu),
        );
        Forward {
            module,
            input,
            batch,
        }
    }

    /// The median time per sample over `runs` forwards.
    fn per_sample(&self, runs: usize) -> Duration {
        median_time(1, runs, || {
            let out = tch::no_grad(|| self.module.forward_ts(&[&self.input])).unwrap();
            let _ = std::hint::black_box(out);
        }) / self.batch
    }
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
    let cache = ts::archives();
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
    store.archive_with_config(
        "resnet18opt",
        &resnet18,
        "image_classifier",
        &[&labels],
        Some("jitOptimize: fuse\n"),
    );
    Models {
        wasmserve: store,
        torchserve_store: cache.join("ts-store"),
        resnet18,
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

fn main() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut r = Report::new("suite");
    eprintln!("== installing TorchServe (cached after the first run) and making the models");
    let venv = script("setup.sh", &[]);
    let m = models();
    let kitten_path = asset("images/kitten.jpg");
    let kitten = std::fs::read(&kitten_path).unwrap();
    r.line("## Against TorchServe and the native pipeline (`cargo bench --bench suite`)");
    r.line("");
    r.line(format!(
        "{cores} cores; TorchServe 0.12.0 in {venv}. Load generator: ApacheBench `ab -k` \
         (bench/torchserve/load.sh), kitten.jpg, after a warm-up. Workers: one per core on \
         both servers."
    ));
    r.line("");

    // 1. Overhead at concurrency 1.
    eprintln!("== overhead");
    let (e2e, native, forward, parts) = overhead(&m.wasmserve, &kitten);
    r.line("### Overhead: one kitten prediction at concurrency 1 (median of 100)");
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
    r.figure("overhead.e2e_ms", ms(e2e));
    r.figure("overhead.native_ms", ms(native));
    r.figure("overhead.forward_ms", ms(forward));
    r.figure("overhead.handler_ms", parts[1]);
    r.figure("overhead.ratio", ratio);

    // 2. Throughput, and 3. batching.
    // (model, label, file, requests per concurrency, the version with `jitOptimize`
    // served beside it and measured in the same turns).
    type Plan = (
        &'static str,
        &'static str,
        PathBuf,
        [usize; 3],
        Option<&'static str>,
    );
    let plan: [Plan; 2] = [
        (
            "mobilenet",
            "mobilenet_v2_quantized.pt (int8)",
            asset("models/mobilenet_v2_quantized.pt"),
            [n(100), n(200), n(300)],
            None,
        ),
        (
            "resnet18",
            "ResNet-18 float32, random weights",
            m.resnet18.clone(),
            [n(30), n(60), n(96)],
            Some("resnet18opt"),
        ),
    ];
    r.line(format!(
        "### Throughput against TorchServe ({cores} workers each)"
    ));
    r.line("");
    r.line(format!(
        "Both servers run side by side and take turns: {ROUNDS} rounds per concurrency, \
         wasmserve then TorchServe (tuned) (for ResNet-18, then wasmserve again with \
         `jitOptimize: fuse`), each round after its own warm-up. Figures are \
         the medians of the rounds; the ratio is the median of the rounds' ratios, with \
         its range. This machine shares its host: its speed drifts by up to a quarter \
         between minutes, and taking turns puts the drift on both servers alike."
    ));
    r.line("");
    r.line("| model | server | c | req/s | p50 ms | p99 ms | failed |");
    r.line("|---|---|---:|---:|---:|---:|---:|");
    let mut summary: Vec<String> = Vec::new();
    for (model, label, file, counts, optimized) in plan {
        eprintln!("== {model}: wasmserve and TorchServe (tuned), in turns");
        let forward = Forward::load(&file, 1);
        let mut forward_alone: Vec<Duration> = Vec::new();
        let (ws, ts, opt) = {
            let archives: Vec<String> = std::iter::once(model)
                .chain(optimized)
                .map(|name| format!("{name}.mar"))
                .collect();
            let archives: Vec<&str> = archives.iter().map(String::as_str).collect();
            let server = wasmserve(m.wasmserve.path(), &archives, cores);
            let ts =
                TorchServe::start(&m.torchserve_store, cores, "tuned", &format!("{model}.mar"));
            let mut urls = vec![server.url(&format!("/predictions/{model}")), ts.url(model)];
            urls.extend(optimized.map(|o| server.url(&format!("/predictions/{o}"))));
            let per_c: Vec<Vec<Vec<Load>>> = [1, 4, 16]
                .iter()
                .zip(counts)
                .map(|(&c, count)| {
                    // At c=16, the forward alone is timed in every round too: the ceiling.
                    interleaved(&urls, &kitten_path, (c, count), ROUNDS, || {
                        if c == 16 {
                            forward_alone.push(forward.per_sample(20));
                        }
                    })
                })
                .collect();
            let column = |i: usize| per_c.iter().map(|s| s[i].clone()).collect::<Vec<_>>();
            (column(0), column(1), optimized.map(|_| column(2)))
        };
        eprintln!("== {model}: TorchServe with its default threads");
        let ts_default: Vec<Load> = {
            let ts = TorchServe::start(
                &m.torchserve_store,
                cores,
                "default",
                &format!("{model}.mar"),
            );
            let url = ts.url(model);
            // Its default threading runs at a few requests per second on a small machine:
            // one round of fewer requests keeps `make bench` within its time.
            [1, 4, 16]
                .iter()
                .zip(counts)
                .map(|(&c, count)| load(&url, &kitten_path, c, (count / 3).max(c).max(20)))
                .collect()
        };
        let medians = |runs: &[Vec<Load>]| runs.iter().map(|r| Load::median(r)).collect();
        let mut rows: Vec<(&str, Vec<Load>)> = vec![("wasmserve", medians(&ws))];
        if let Some(opt) = &opt {
            rows.push(("wasmserve, jitOptimize: fuse", medians(opt)));
        }
        rows.push(("TorchServe (OMP_NUM_THREADS=1)", medians(&ts)));
        rows.push(("TorchServe (its default threads, one round)", ts_default));
        for (server, loads) in &rows {
            for (c, l) in [1, 4, 16].iter().zip(loads) {
                r.line(format!(
                    "| {label} | {server} | {c} | {:.1} | {:.1} | {:.1} | {} |",
                    l.rps, l.p50, l.p99, l.failed
                ));
            }
        }
        for (i, c) in [1, 4, 16].iter().enumerate() {
            let rps = Ratio::of(&ws[i], &ts[i], |l| l.rps);
            let p50 = Ratio::of(&ws[i], &ts[i], |l| l.p50);
            let p99 = Ratio::of(&ws[i], &ts[i], |l| l.p99);
            r.line(format!(
                "| {label} | **wasmserve / TorchServe tuned** | {c} | **{rps}** | {p50} | {p99} | |"
            ));
            r.figure(
                format!("{model}.wasmserve.rps.c{c}"),
                Load::median(&ws[i]).rps,
            );
            r.figure(
                format!("{model}.torchserve.rps.c{c}"),
                Load::median(&ts[i]).rps,
            );
            r.figure(format!("{model}.ratio.c{c}"), rps.median);
            r.figure(format!("{model}.p99_ratio.c{c}"), p99.median);
            if let Some(opt) = &opt {
                let ratio = Ratio::of(&opt[i], &ts[i], |l| l.rps);
                let p99 = Ratio::of(&opt[i], &ts[i], |l| l.p99);
                r.line(format!(
                    "| {label} | **wasmserve jitOptimize / TorchServe tuned** | {c} | **{ratio}** | | {p99} | |"
                ));
                r.figure(
                    format!("{model}.optimized.rps.c{c}"),
                    Load::median(&opt[i]).rps,
                );
                r.figure(format!("{model}.optimized_ratio.c{c}"), ratio.median);
            }
            if *c == 16 {
                // What wasmserve would reach if it added nothing to the model's forward:
                // every worker doing forwards back to back; round by round.
                let ceilings: Vec<f64> = forward_alone
                    .iter()
                    .map(|f| cores as f64 / f.as_secs_f64())
                    .collect();
                let over_ts = Ratio::over(
                    ceilings
                        .iter()
                        .zip(&ts[2])
                        .map(|(c, t)| c / t.rps)
                        .collect(),
                );
                let reached = Ratio::over(
                    ceilings
                        .iter()
                        .zip(&ws[2])
                        .map(|(c, w)| w.rps / c)
                        .collect(),
                );
                let forward_ms =
                    1e3 * median(forward_alone.iter().map(Duration::as_secs_f64).collect());
                r.figure(format!("{model}.forward_ms"), forward_ms);
                r.figure(format!("{model}.ceiling_share"), reached.median);
                summary.push(format!(
                    "- {label}, c=16: **{:.2}×** TorchServe's throughput (goal ≥ 2×: {}), p99 \
                     {:.2}× TorchServe's (goal lower: {}). Ceiling: the forward alone takes \
                     {:.1} ms on one thread (median of the rounds), so {cores} workers doing \
                     nothing but forwards would serve {:.0} req/s = {over_ts} TorchServe's; \
                     wasmserve reaches {:.0}% ({:.0}–{:.0}%) of that ceiling.",
                    rps.median,
                    if rps.median >= 2.0 { "met" } else { "not met" },
                    p99.median,
                    if p99.median < 1.0 { "met" } else { "not met" },
                    forward_ms,
                    median(ceilings.clone()),
                    100.0 * reached.median,
                    100.0 * reached.min,
                    100.0 * reached.max,
                ));
            }
        }
    }
    r.line("");
    for line in &summary {
        r.line(line);
    }
    r.line("");

    eprintln!("== batching");
    let (one, eight) = (Forward::load(&m.resnet18, 1), Forward::load(&m.resnet18, 8));
    let mut forward_gain = Vec::new();
    let (b1, b8) = {
        let server = wasmserve(
            m.wasmserve.path(),
            &["resnet18.mar", "resnet18b8.mar"],
            cores,
        );
        let urls = [
            server.url("/predictions/resnet18"),
            server.url("/predictions/resnet18b8"),
        ];
        // What the forward itself gains from a batch, timed in every round too.
        let mut runs = interleaved(&urls, &kitten_path, (16, n(96)), BATCH_ROUNDS, || {
            let (a, b) = (one.per_sample(8), eight.per_sample(2));
            forward_gain.push((a, b));
        });
        (runs.remove(0), runs.remove(0))
    };
    r.line("### Batching: ResNet-18 float32 at concurrency 16");
    r.line("");
    r.line(format!(
        "Both versions served by one server, taking turns ({BATCH_ROUNDS} rounds, each after \
         its own warm-up); medians of the rounds."
    ));
    r.line("");
    r.line("| batch_size | req/s | p50 ms | p99 ms | failed |");
    r.line("|---:|---:|---:|---:|---:|");
    for (what, runs) in [("1", &b1), ("8 (max_batch_delay 20 ms)", &b8)] {
        let l = Load::median(runs);
        r.line(format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {} |",
            l.rps, l.p50, l.p99, l.failed
        ));
    }
    let batched = Ratio::of(&b8, &b1, |l| l.rps);
    r.line(format!("\nbatch 8 / batch 1 throughput = {batched}\n"));
    r.figure("batching.ratio", batched.median);
    let gain = Ratio::over(
        forward_gain
            .iter()
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect(),
    );
    let per_sample = |pick: fn(&(Duration, Duration)) -> Duration| {
        median(forward_gain.iter().map(|g| ms(pick(g))).collect())
    };
    r.line(format!(
        "What the forward itself gains from a batch, timed in each round: the ResNet-18 \
         forward in this process on one thread takes {:.1} ms per sample alone and {:.1} ms \
         per sample in a batch of 8: {gain}. What a batch saves on a GPU (one kernel launch \
         for 8 samples) a CPU convolution, already compute-bound at batch 1, mostly does \
         not; a batch also shares a lane's fixed costs per forward.\n",
        per_sample(|g| g.0),
        per_sample(|g| g.1),
    ));

    // 4. Memory.
    eprintln!("== memory");
    r.line("### Memory: RSS of the whole server, mobilenet_v2_quantized, after 20 predictions");
    r.line("");
    r.line("| workers | wasmserve MiB | TorchServe MiB (all processes) | ratio |");
    r.line("|---:|---:|---:|---:|");
    for workers in [1, 4] {
        let ws_rss = {
            let server = wasmserve(m.wasmserve.path(), &["mobilenet.mar"], workers);
            let url = server.url("/predictions/mobilenet");
            warm(&url, &kitten, workers);
            vm_rss_mib(server.pid())
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
        r.figure(format!("memory.w{workers}.wasmserve_mib"), ws_rss);
        r.figure(format!("memory.w{workers}.torchserve_mib"), ts_rss);
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
        "### Cold start: launch to the first successful prediction, mobilenet, {cores} workers"
    ));
    r.line("");
    r.line("| server | s |");
    r.line("|---|---:|");
    r.line(format!("| wasmserve | {:.2} |", ws_cold.as_secs_f64()));
    r.line(format!("| TorchServe | {:.2} |", ts_cold.as_secs_f64()));
    r.figure("cold_start.wasmserve_s", ws_cold.as_secs_f64());
    r.figure("cold_start.torchserve_s", ts_cold.as_secs_f64());
    r.line(format!(
        "\nwasmserve starts {:.1}× faster.\n",
        ts_cold.as_secs_f64() / ws_cold.as_secs_f64()
    ));

    // 6. Handler instantiation.
    let inst = instantiation();
    r.line("### Handler instantiation");
    r.line("");
    r.line(format!(
        "A fresh `image_classifier` instance (instantiate + init, pooling allocator): {:.1} µs (median of 200).",
        inst.as_secs_f64() * 1e6
    ));
    r.line("");
    r.save();
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

    // The same work natively, with the threads a lane's forward gets (one per worker,
    // a worker per core).
    tch::set_num_threads(1);
    let mut model = tch::CModule::load(asset("models/mobilenet_v2_quantized.pt")).unwrap();
    model.set_eval();
    let tensor =
        wasmserve::imaging::imagenet_transform(kitten, wasmserve::imaging::Mode::Exact).unwrap();
    let input = tch::Tensor::from_slice(&tensor.to_vec::<f32>().unwrap()).view([1, 3, 224, 224]);
    let labels = wasmserve_handler::output::LabelMap::from_json(
        &std::fs::read(asset("images/index_to_name.json")).unwrap(),
    )
    .unwrap();
    let native = || {
        let t = wasmserve::imaging::imagenet_transform(kitten, wasmserve::imaging::Mode::Exact)
            .unwrap();
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
    };

    // The three paths take turns, request by request, so that a drift of the machine's
    // speed falls on all of them alike.
    let (mut e2e, mut native_times, mut forward) = (Vec::new(), Vec::new(), Vec::new());
    let mut parts: Vec<[f64; 4]> = Vec::new();
    for i in 0..WARMUP + RUNS {
        let t = Instant::now();
        let resp = http.post(&url).body(kitten.to_vec()).send().unwrap();
        assert!(resp.status().is_success());
        resp.bytes().unwrap();
        let d = t.elapsed();
        let text = http.get(&metrics_url).send().unwrap().text().unwrap();
        let t = Instant::now();
        native();
        let n = t.elapsed();
        let t = Instant::now();
        let _ = std::hint::black_box(tch::no_grad(|| model.forward_ts(&[&input])).unwrap());
        let f = t.elapsed();
        if i >= WARMUP {
            e2e.push(d);
            native_times.push(n);
            forward.push(f);
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
    let median_of = |i: usize| median(parts.iter().map(|p| p[i]).collect());
    let parts = [median_of(0), median_of(1), median_of(2), median_of(3)];
    let mid = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    (mid(e2e), mid(native_times), mid(forward), parts)
}

fn instantiation() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (_runtime, component, sandbox) = builtin_sandbox("image_classifier", dir.path());
    median_time(20, 200, || {
        std::hint::black_box(component.instantiate(&sandbox).unwrap());
    })
}
