//! The same two jobs done by handlers in Rust, Python (componentize-py) and JavaScript
//! (componentize-js): MNIST digits with vit4mnist.ptl (Rust `examples/mnist_handler`
//! against `examples/python_handler`) and Reddit posts with reddit_bytelstm.pt (the
//! built-in Rust `text_classifier` against `examples/js_handler`). For each: the
//! component's size, its compilation (once per archive; the server caches it), a cold
//! instance (fresh instance + `init`, median of 30) and the handler's time per request
//! (`preprocess` and `postprocess` in a warm instance, median of 100), all in one run
//! with the server's limits. Every handler's answers go through the real model first and
//! are printed, so the two languages can be seen to agree.
//!
//! `cargo bench --bench languages` (runs scripts/build-python-handler.sh and
//! scripts/build-js-handler.sh first, which install their toolchains once).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmserve::model::{Model, from_torch, to_torch};
use wasmserve::sandbox::{HandlerRuntime, Limits, Sandbox, Tensor};

fn median(n: usize, f: impl FnMut()) -> Duration {
    common::median_time(5, n, f)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn build(script: &str, name: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Path::new(env!("WASMSERVE_GUEST_DIR"))
        .join("../../languages")
        .join(format!("{name}.wasm"));
    let status = std::process::Command::new(root.join("scripts").join(script))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{script} failed");
    std::fs::read(out).unwrap()
}

struct Case {
    job: &'static str,
    language: &'static str,
    component: Vec<u8>,
    model: PathBuf,
    model_dir: PathBuf,
    config: &'static str,
    /// (what, request body); the first is the one timed.
    inputs: Vec<(String, Vec<u8>)>,
}

fn main() {
    let files = tempfile::tempdir().unwrap();
    let empty = files.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let reddit_dir = files.path().join("reddit");
    std::fs::create_dir(&reddit_dir).unwrap();
    std::fs::copy(
        common::asset("models/reddit_topics.txt"),
        reddit_dir.join("reddit_topics.txt"),
    )
    .unwrap();

    let digits: Vec<(String, Vec<u8>)> = (0..10)
        .map(|d| {
            (
                format!("{d}.png"),
                std::fs::read(common::asset(&format!("images/mnist/{d}.png"))).unwrap(),
            )
        })
        .collect();
    let posts: Vec<(String, Vec<u8>)> = [
        "The Lakers beat the Celtics in overtime last night",
        "New patch nerfs Mercy and buffs Reinhardt",
    ]
    .iter()
    .map(|s| (format!("{s:?}"), s.as_bytes().to_vec()))
    .collect();

    let python = build("build-python-handler.sh", "python_handler");
    let js = build("build-js-handler.sh", "js_handler");
    let mnist_rust = std::fs::read(common::guest("mnist_handler")).unwrap();
    let text_rust = wasmserve::builtin::component("text_classifier")
        .unwrap()
        .to_vec();

    let cases = [
        Case {
            job: "MNIST digit",
            language: "Rust (examples/mnist_handler)",
            component: mnist_rust,
            model: common::asset("models/vit4mnist.ptl"),
            model_dir: empty.clone(),
            config: "{}",
            inputs: digits.clone(),
        },
        Case {
            job: "MNIST digit",
            language: "Python (examples/python_handler)",
            component: python,
            model: common::asset("models/vit4mnist.ptl"),
            model_dir: empty.clone(),
            config: "{}",
            inputs: digits,
        },
        Case {
            job: "Reddit topic",
            language: "Rust (built-in text_classifier)",
            component: text_rust,
            model: common::asset("models/reddit_bytelstm.pt"),
            model_dir: reddit_dir.clone(),
            config: r#"{"labels": "reddit_topics.txt", "output": "probabilities"}"#,
            inputs: posts.clone(),
        },
        Case {
            job: "Reddit topic",
            language: "JavaScript (examples/js_handler)",
            component: js,
            model: common::asset("models/reddit_bytelstm.pt"),
            model_dir: reddit_dir,
            config: "{}",
            inputs: posts,
        },
    ];

    let runtime = HandlerRuntime::new(Limits::default(), None).unwrap();
    let mut rows = Vec::new();
    for case in &cases {
        let t = Instant::now();
        let component = runtime.compile(&case.component).unwrap();
        let compile = t.elapsed();
        let sandbox = Sandbox::new(case.model_dir.clone(), common::bench_context(case.config));
        let instantiate = median(30, || {
            std::hint::black_box(component.instantiate(&sandbox).unwrap());
        });

        // Every input through the real model once: the answers.
        let model = Model::load(&case.model, tch::Device::Cpu).unwrap();
        let mut instance = component.instantiate(&sandbox).unwrap();
        let mut outputs_of_first: Vec<Tensor> = Vec::new();
        println!("{} / {}:", case.job, case.language);
        for (i, (what, body)) in case.inputs.iter().enumerate() {
            let req = common::body_request(body.clone());
            let inputs = instance.preprocess(&req, None).unwrap().unwrap();
            let torch: Vec<tch::Tensor> = inputs.iter().map(|t| to_torch(t).unwrap()).collect();
            let outputs: Vec<Tensor> = model
                .forward(&torch)
                .unwrap()
                .iter()
                .map(|(name, t)| from_torch(name, t).unwrap())
                .collect();
            let resp = instance.postprocess(&req, &outputs, None).unwrap().unwrap();
            let answer = String::from_utf8_lossy(&resp.body);
            let answer: String = answer.chars().take(100).collect();
            println!("  {what} → {answer}");
            if i == 0 {
                outputs_of_first = outputs;
            }
        }

        let req = common::body_request(case.inputs[0].1.clone());
        let pre = median(100, || {
            std::hint::black_box(instance.preprocess(&req, None).unwrap().unwrap());
        });
        let post = median(100, || {
            std::hint::black_box(
                instance
                    .postprocess(&req, &outputs_of_first, None)
                    .unwrap()
                    .unwrap(),
            );
        });
        let both = median(100, || {
            instance.preprocess(&req, None).unwrap().unwrap();
            instance
                .postprocess(&req, &outputs_of_first, None)
                .unwrap()
                .unwrap();
        });
        rows.push(format!(
            "| {} | {} | {:.1} MiB | {:.1} s | {:.2} | {:.3} | {:.3} | {:.3} |",
            case.job,
            case.language,
            case.component.len() as f64 / (1 << 20) as f64,
            compile.as_secs_f64(),
            ms(instantiate),
            ms(pre),
            ms(post),
            ms(both),
        ));
    }
    println!();
    println!(
        "medians: instance of 30, calls of 100 (inputs: 0.png, the Lakers sentence); compile once, uncached"
    );
    println!(
        "| job | handler | component | compile | instance + init (ms) | preprocess (ms) | postprocess (ms) | pre + post (ms) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}
