//! Many models on one server, one run (`make bench-models`, about ten minutes):
//!
//! 1. MobileNetV2 int8 registered 1, 10, 50 and 100 times under different names, one
//!    worker each: per step the server's RSS, how long registering the last one took,
//!    the CPU the idle server uses, and the p50 of one busy model (kitten, c=1) while
//!    the others idle.
//! 2. The same archive with `scaleToZero: true`, registered 1,000 times: registration
//!    times, the RSS of 1,000 cold models, the first-request latency of a cold model
//!    (its weights and worker loaded on demand), and the RSS with 10 of them hot.
//! 3. TorchServe 0.12 (tuned), registering its own MobileNetV2 archive under new names
//!    with one worker each, past the memory wasmserve used for 100 models and on to
//!    2 GiB: how many fit in each.
//!
//! `WASMSERVE_BENCH_QUICK=1` registers 10 / 100 instead of 100 / 1,000.

#[path = "../tests/common/mod.rs"]
mod common;
mod report;
mod ts;

use std::time::{Duration, Instant};

use common::*;

fn quick() -> bool {
    std::env::var_os("WASMSERVE_BENCH_QUICK").is_some()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// The share of one core the process uses over `over`, doing nothing asked of it.
fn idle_cpu_percent(pid: u32, over: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(over);
    (cpu_seconds(pid) - before) / over.as_secs_f64() * 100.0
}

/// Registers `url` as `name` with one worker, synchronously: how long it took.
fn register(mgmt: &str, url: &str, name: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let resp = client()
        .post(format!(
            "{mgmt}/models?url={url}&model_name={name}&initial_workers=1&synchronous=true"
        ))
        .timeout(Duration::from_secs(600))
        .send()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    match resp.status().is_success() {
        true => Ok(took),
        false => Err(format!(
            "{}: {}",
            resp.status(),
            resp.text().unwrap_or_default()
        )),
    }
}

fn kitten(url: &str) -> Duration {
    let t = Instant::now();
    let resp = client().post(url).body(kitten_jpg()).send().unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (many, thousand) = if quick() { (10, 100) } else { (100, 1000) };
    let steps: Vec<usize> = [1, 10, 50, 100]
        .into_iter()
        .filter(|&s| s <= many)
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut r = report::Report::new("models");
    r.line("## Many models on one server (`make bench-models`)\n");
    r.line(format!(
        "MobileNetV2 int8 with the built-in image_classifier, one worker per model; kitten.jpg at concurrency 1; {cores} cores.\n"
    ));

    let store = ModelStore::new();
    store.mobilenet();
    store.archive_with_config(
        "cold",
        &asset("models/mobilenet_v2_quantized.pt"),
        "image_classifier",
        &[&asset("images/index_to_name.json")],
        Some("scaleToZero: true\nscaleToZeroIdleSeconds: 600\n"),
    );

    // 1. Always-loaded models.
    let server = Server::start(store.path(), &[], "enable_model_api=true");
    let pid = server.pid();
    let mgmt = server.management.clone();
    r.line(format!("### Always loaded: 1 to {many} models\n"));
    r.line(
        "| models | RSS MiB | registering the last one, ms | slowest registration so far, ms | idle CPU, % of a core | busy model p50 ms (others idle) |",
    );
    r.line("|---:|---:|---:|---:|---:|---:|");
    let (mut registered, mut slowest) = (0, Duration::ZERO);
    let mut rss_at_many = 0.0;
    for &step in &steps {
        let mut last = Duration::ZERO;
        while registered < step {
            last = register(&mgmt, "mobilenet.mar", &format!("m{registered:03}")).unwrap();
            slowest = slowest.max(last);
            registered += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
        let idle = idle_cpu_percent(pid, Duration::from_secs(10));
        let url = server.url("/predictions/m000");
        let p50 = ms(median_time(5, 40, || {
            kitten(&url);
        }));
        let rss = vm_rss_mib(pid);
        rss_at_many = rss;
        r.line(format!(
            "| {step} | {rss:.0} | {:.0} | {:.0} | {idle:.2} | {p50:.1} |",
            ms(last),
            ms(slowest)
        ));
        r.figure(format!("loaded.n{step}.rss_mib"), rss);
        r.figure(format!("loaded.n{step}.last_registration_ms"), ms(last));
        r.figure(format!("loaded.n{step}.idle_cpu_percent"), idle);
        r.figure(format!("loaded.n{step}.busy_p50_ms"), p50);
    }
    r.figure("loaded.models", many as f64);
    r.figure("loaded.slowest_registration_ms", ms(slowest));
    drop(server);

    // 2. Models that scale to zero.
    let server = Server::start(store.path(), &[], "enable_model_api=true");
    let pid = server.pid();
    let mgmt = server.management.clone();
    let idle_rss = vm_rss_mib(pid);
    let mut times = Vec::with_capacity(thousand);
    let t = Instant::now();
    for i in 0..thousand {
        times.push(ms(register(&mgmt, "cold.mar", &format!("c{i:04}")).unwrap()));
    }
    let total = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let cold_rss = vm_rss_mib(pid);
    let cold_idle = idle_cpu_percent(pid, Duration::from_secs(10));
    let hot = 10;
    let firsts: Vec<f64> = (0..hot)
        .map(|i| ms(kitten(&server.url(&format!("/predictions/c{i:04}")))))
        .collect();
    let url = server.url("/predictions/c0000");
    let warm_p50 = ms(median_time(5, 40, || {
        kitten(&url);
    }));
    std::thread::sleep(Duration::from_secs(1));
    let hot_rss = vm_rss_mib(pid);
    let hot_idle = idle_cpu_percent(pid, Duration::from_secs(10));
    let max_time = times.iter().cloned().fold(0.0, f64::max);
    r.line(format!(
        "\n### Scaling to zero: {thousand} models registered with `scaleToZero: true`\n"
    ));
    r.line("| figure | value |");
    r.line("|---|---:|");
    r.line(format!("| RSS with no model | {idle_rss:.0} MiB |"));
    r.line(format!(
        "| registering {thousand} cold models: total / p50 / slowest | {:.1} s / {:.0} ms / {max_time:.0} ms |",
        total.as_secs_f64(),
        median(times.clone())
    ));
    r.line(format!("| RSS with {thousand} cold | {cold_rss:.0} MiB |"));
    r.line(format!(
        "| idle CPU with {thousand} cold | {cold_idle:.2} % of a core |"
    ));
    r.line(format!(
        "| first request to a cold model (loads weights and worker): median / slowest of {hot} | {:.0} ms / {:.0} ms |",
        median(firsts.clone()),
        firsts.iter().cloned().fold(0.0, f64::max)
    ));
    r.line(format!(
        "| each of the {hot} first requests, in order | {} ms |",
        firsts
            .iter()
            .map(|f| format!("{f:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    ));
    r.line(format!("| the same model warm, p50 | {warm_p50:.1} ms |"));
    r.line(format!(
        "| RSS with {thousand} registered, {hot} hot | {hot_rss:.0} MiB |"
    ));
    r.line(format!(
        "| idle CPU with {thousand} registered, {hot} hot | {hot_idle:.2} % of a core |"
    ));
    r.figure("cold.models", thousand as f64);
    r.figure("cold.hot", hot as f64);
    r.figure("cold.rss_mib", cold_rss);
    r.figure("cold.hot_rss_mib", hot_rss);
    r.figure("cold.registration_p50_ms", median(times.clone()));
    r.figure("cold.registration_max_ms", max_time);
    r.figure("cold.first_request_median_ms", median(firsts.clone()));
    r.figure(
        "cold.first_request_max_ms",
        firsts.iter().cloned().fold(0.0, f64::max),
    );
    r.figure("cold.warm_p50_ms", warm_p50);
    r.figure("cold.idle_cpu_percent", cold_idle.max(hot_idle));
    drop(server);

    // 3. TorchServe, as many as fit in the memory wasmserve took for `many` models.
    let cache = ts::archives();
    let ts_store = cache.join("ts-store");
    let torchserve = ts::TorchServe::start(&ts_store, 1, "tuned", "mobilenet.mar");
    let ts_mgmt = format!("http://127.0.0.1:{}", torchserve.port + 1);
    r.line(format!(
        "\n### TorchServe 0.12 (OMP_NUM_THREADS=1), one worker per model, up to the {rss_at_many:.0} MiB wasmserve used for {many} models\n"
    ));
    r.line("| models | RSS MiB (front end + workers) | registering the last one, ms |");
    r.line("|---:|---:|---:|");
    let mut n = 1;
    let mut rss = torchserve.rss_mib();
    r.line(format!(
        "| 1 | {rss:.0} | (at start, {:.1} s) |",
        torchserve.ready.as_secs_f64()
    ));
    // Past wasmserve's memory for `many` models, on to the goal's 2 GiB.
    let budget = rss_at_many.max(2048.0);
    let mut fit_in_ours = if rss <= rss_at_many { 1 } else { 0 };
    let mut fit_in_2g = if rss <= 2048.0 { 1 } else { 0 };
    r.figure("torchserve.one_model_rss_mib", rss);
    let limit = Instant::now() + Duration::from_secs(if quick() { 120 } else { 900 });
    let stop = loop {
        if rss >= budget {
            break format!("passed {budget:.0} MiB at {n} models ({rss:.0} MiB)");
        }
        if n >= many {
            break format!("reached {n} models in {rss:.0} MiB");
        }
        if Instant::now() > limit {
            break format!("stopped by the time limit at {n} models ({rss:.0} MiB)");
        }
        match register(&ts_mgmt, "mobilenet.mar", &format!("t{n:03}")) {
            Ok(took) => {
                n += 1;
                rss = torchserve.rss_mib();
                if rss <= rss_at_many {
                    fit_in_ours = n;
                }
                if rss <= 2048.0 {
                    fit_in_2g = n;
                }
                r.line(format!("| {n} | {rss:.0} | {:.0} |", ms(took)));
            }
            Err(e) => break format!("registration {} failed at {rss:.0} MiB: {e}", n + 1),
        }
    };
    r.line(format!(
        "\nTorchServe {stop}; in the {rss_at_many:.0} MiB wasmserve used for {many} models it \
         fits {fit_in_ours}, in 2 GiB {fit_in_2g}."
    ));
    r.figure("torchserve.fit_in_wasmserve_memory", fit_in_ours as f64);
    r.figure("torchserve.fit_in_2gib", fit_in_2g as f64);
    // Its last model answers, so that the count is of working models.
    if n > 1 {
        let answer = client()
            .post(torchserve.url(&format!("t{:03}", n - 1)))
            .body(kitten_jpg())
            .send();
        r.line(format!(
            "Its last model answers the kitten: {}.",
            answer
                .map(|a| a.status().to_string())
                .unwrap_or_else(|e| e.to_string())
        ));
    }
    r.line("");
    r.save();
}
