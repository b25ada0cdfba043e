//! The last step of `make bench`: assembles `bench/RESULTS.md` from the parts the
//! benchmarks left in `bench/results/` (bench/report.rs): first one summary table of the
//! headline figures, each from the part that measured it (so every ratio in a row was
//! measured in one run, side by side), then each part's own tables, stamped with when and
//! on which CPU they were measured. A part that has not been run shows as `—` with the
//! make target that produces it.
//!
//! `cargo bench --bench results` (instant; it measures nothing).

// Only `results_dir` of it is used here.
#[allow(dead_code)]
mod report;

use std::collections::BTreeMap;

use serde_json::Value;

/// The parts, in the order RESULTS.md shows them: (name, the make target that runs it).
const PARTS: [(&str, &str); 5] = [
    ("suite", "make bench"),
    ("optimize", "make bench-optimize"),
    ("imaging", "make bench-imaging"),
    ("perf_analyzer", "make bench-perf-analyzer"),
    ("models", "make bench-models"),
];

struct Part {
    json: Value,
    md: String,
}

struct Parts(BTreeMap<&'static str, Part>);

impl Parts {
    fn load() -> Parts {
        let dir = report::results_dir();
        let mut parts = BTreeMap::new();
        for (name, _) in PARTS {
            let json = std::fs::read(dir.join(format!("{name}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let md = std::fs::read_to_string(dir.join(format!("{name}.md"))).ok();
            if let (Some(json), Some(md)) = (json, md) {
                parts.insert(name, Part { json, md });
            }
        }
        Parts(parts)
    }

    /// A figure of a part, where that part has been run and recorded it.
    fn get(&self, part: &str, key: &str) -> Option<f64> {
        self.0.get(part)?.json["figures"][key].as_f64()
    }

    /// `a / b / c` of the figures `key` with `{c}` replaced by 1, 4 and 16.
    fn per_c(&self, part: &str, key: &str, fmt: fn(f64) -> String) -> String {
        let each: Vec<String> = [1, 4, 16]
            .iter()
            .map(|c| {
                self.get(part, &key.replace("{c}", &c.to_string()))
                    .map_or("—".into(), fmt)
            })
            .collect();
        each.join(" / ")
    }
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn f0(v: f64) -> String {
    format!("{v:.0}")
}

fn times(v: f64) -> String {
    format!("{v:.2}×")
}

fn percent(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// `f(value)` or `—`.
fn or_dash(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or("—".into(), f)
}

fn summary(p: &Parts) -> Vec<[String; 4]> {
    let s = |k: &str| p.get("suite", k);
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |a: String, b: String, c: String, d: String| rows.push([a, b, c, d]);
    for (model, label) in [
        ("mobilenet", "MobileNetV2 int8"),
        ("resnet18", "ResNet-18 fp32"),
    ] {
        row(
            format!("{label} req/s, c=1 / 4 / 16"),
            p.per_c("suite", &format!("{model}.wasmserve.rps.c{{c}}"), f1),
            p.per_c("suite", &format!("{model}.torchserve.rps.c{{c}}"), f1),
            p.per_c("suite", &format!("{model}.ratio.c{{c}}"), times),
        );
    }
    row(
        "ResNet-18 fp32 with `jitOptimize: fuse`, req/s".into(),
        p.per_c("suite", "resnet18.optimized.rps.c{c}", f1),
        p.per_c("suite", "resnet18.torchserve.rps.c{c}", f1),
        format!(
            "{} (goal ≥ 1.5×)",
            p.per_c("suite", "resnet18.optimized_ratio.c{c}", times)
        ),
    );
    row(
        "MobileNetV2: share of the forward ceiling (workers × 1/forward), c=16".into(),
        or_dash(s("mobilenet.ceiling_share"), percent),
        String::new(),
        format!(
            "forward {} ms; handler pre+post {} ms",
            or_dash(s("mobilenet.forward_ms"), f1),
            or_dash(s("overhead.handler_ms"), f1)
        ),
    );
    row(
        "ResNet-18: share of the forward ceiling, c=16".into(),
        or_dash(s("resnet18.ceiling_share"), percent),
        String::new(),
        format!("forward {} ms", or_dash(s("resnet18.forward_ms"), f1)),
    );
    row(
        "kitten c=1, end to end / native pipeline".into(),
        format!(
            "**{}**",
            or_dash(s("overhead.ratio"), |v| format!("{v:.2}"))
        ),
        String::new(),
        format!(
            "{} / {} ms (goal ≤ 1.10)",
            or_dash(s("overhead.e2e_ms"), |v| format!("{v:.2}")),
            or_dash(s("overhead.native_ms"), |v| format!("{v:.2}"))
        ),
    );
    let pair = |a: Option<f64>, b: Option<f64>, f: fn(f64) -> String| {
        format!("{} / {}", or_dash(a, f), or_dash(b, f))
    };
    row(
        "RSS, 1 / 4 workers, MiB".into(),
        pair(
            s("memory.w1.wasmserve_mib"),
            s("memory.w4.wasmserve_mib"),
            f0,
        ),
        pair(
            s("memory.w1.torchserve_mib"),
            s("memory.w4.torchserve_mib"),
            f0,
        ),
        String::new(),
    );
    row(
        "cold start (launch to the first answer), s".into(),
        or_dash(s("cold_start.wasmserve_s"), |v| format!("{v:.2}")),
        or_dash(s("cold_start.torchserve_s"), |v| format!("{v:.2}")),
        String::new(),
    );
    let i = |k: &str| p.get("imaging", k);
    for (image, label) in [("kitten", "kitten.jpg"), ("large", "a 2400×1600 JPEG")] {
        let over = |mode: &str| {
            i(&format!("{image}.{mode}_ms"))
                .zip(i(&format!("{image}.pillow_ms")))
                .map(|(a, b)| a / b)
        };
        row(
            format!("torchvision's ImageNet transform of {label}, exact / fast, ms"),
            pair(
                i(&format!("{image}.exact_ms")),
                i(&format!("{image}.fast_ms")),
                |v| format!("{v:.2}"),
            ),
            format!(
                "Pillow {}",
                or_dash(i(&format!("{image}.pillow_ms")), |v| format!("{v:.2}"))
            ),
            format!(
                "{} (goal ≤ 1× / ≤ 0.4×)",
                pair(over("exact"), over("fast"), times)
            ),
        );
    }
    let o = |k: &str| p.get("optimize", k);
    for (model, label) in [
        ("resnet18", "ResNet-18 fp32"),
        ("mobilenet", "MobileNetV2 int8"),
    ] {
        let ms = |way: &str| o(&format!("{model}.{way}_ms"));
        let (plain, inference, fuse) = (ms("plain"), ms("inference"), ms("fuse"));
        let two = |v: f64| format!("{v:.2}");
        row(
            format!("{label} forward, plain → `jitOptimize: inference` / `fuse`, 1 thread, ms"),
            format!(
                "{} → {} / {}",
                or_dash(plain, two),
                or_dash(inference, two),
                or_dash(fuse, two)
            ),
            String::new(),
            pair(
                inference.zip(plain).map(|(a, b)| a / b),
                fuse.zip(plain).map(|(a, b)| a / b),
                times,
            ),
        );
    }
    for (model, label) in [
        ("mobilenet", "MobileNetV2 int8"),
        ("resnet18", "ResNet-18 fp32"),
    ] {
        row(
            format!("perf_analyzer, KServe v2, {label}: infer/s, c=1 / 4 / 16"),
            p.per_c("perf_analyzer", &format!("{model}.rps.c{{c}}"), f1),
            String::new(),
            format!(
                "p99 {} ms",
                p.per_c("perf_analyzer", &format!("{model}.p99.c{{c}}"), f1)
            ),
        );
    }
    let m = |k: &str| p.get("models", k);
    let many = m("loaded.models").unwrap_or(100.0);
    let at = |k: &str| m(&format!("loaded.n{many}.{k}"));
    row(
        format!("{many} models loaded, 1 worker each: RSS MiB"),
        format!("**{}**", or_dash(at("rss_mib"), f0)),
        format!(
            "fits {} in that memory, {} in 2 GiB",
            or_dash(m("torchserve.fit_in_wasmserve_memory"), f0),
            or_dash(m("torchserve.fit_in_2gib"), f0)
        ),
        format!(
            "goal ≤ 2048; TorchServe with one model: {} MiB",
            or_dash(m("torchserve.one_model_rss_mib"), f0)
        ),
    );
    row(
        format!("{many} models: registering one (slowest), idle CPU, a busy model's p50"),
        format!(
            "{} ms, {} % of a core, {} ms",
            or_dash(m("loaded.slowest_registration_ms"), f0),
            or_dash(at("idle_cpu_percent"), f1),
            or_dash(at("busy_p50_ms"), f1)
        ),
        String::new(),
        "goal ≤ 1 s, no CPU".into(),
    );
    let thousand = m("cold.models").unwrap_or(1000.0);
    let hot = m("cold.hot").unwrap_or(10.0);
    row(
        format!("{thousand} models with `scaleToZero`: RSS all cold / {hot} hot, MiB"),
        pair(m("cold.rss_mib"), m("cold.hot_rss_mib"), f0),
        String::new(),
        format!(
            "registration p50 {} ms",
            or_dash(m("cold.registration_p50_ms"), f0)
        ),
    );
    row(
        "a cold model's first request: median (slowest), ms".into(),
        format!(
            "**{}** ({})",
            or_dash(m("cold.first_request_median_ms"), f0),
            or_dash(m("cold.first_request_max_ms"), f0)
        ),
        String::new(),
        format!(
            "goal ≤ 300; warm p50 {} ms",
            or_dash(m("cold.warm_p50_ms"), f1)
        ),
    );
    rows
}

fn main() {
    let parts = Parts::load();
    let mut out = String::from("# wasmserve benchmark results\n\n");
    out.push_str(
        "Written by `make bench` (bench/results.rs), from the parts each benchmark left in \
         `bench/results/`. Within a part, what is compared runs side by side and takes \
         turns, so every ratio is measured in one run; parts may come from different \
         runs, each stamped below.\n\n",
    );
    out.push_str("| part | measured | CPU |\n|---|---|---|\n");
    for (name, target) in PARTS {
        match parts.0.get(name) {
            Some(part) => out.push_str(&format!(
                "| {name} (`{target}`) | {} | {} × {} |\n",
                part.json["measured"].as_str().unwrap_or("?"),
                part.json["cores"],
                part.json["cpu"].as_str().unwrap_or("?"),
            )),
            None => out.push_str(&format!("| {name} | not run: `{target}` | |\n")),
        }
    }
    out.push_str("\n## Summary\n\n| figure | wasmserve | TorchServe 0.12 tuned | ratio, note |\n");
    out.push_str("|---|---:|---:|---|\n");
    for [a, b, c, d] in summary(&parts) {
        out.push_str(&format!("| {a} | {b} | {c} | {d} |\n"));
    }
    out.push('\n');
    for (name, _) in PARTS {
        if let Some(part) = parts.0.get(name) {
            out.push_str(part.md.trim_end());
            out.push_str("\n\n");
        }
    }
    print!("{out}");
    let path = report::results_dir().parent().unwrap().join("RESULTS.md");
    std::fs::write(&path, out.trim_end().to_string() + "\n").unwrap();
    eprintln!("== written to bench/RESULTS.md");
}
