//! The image path against Pillow's: torchvision's ImageNet transform (`Resize(256)`,
//! `CenterCrop(224)`, `ToTensor()`, `Normalize`) of the same JPEG bytes by
//!
//! - wasmserve, exact (the default: Pillow's pixels, `imaging::imagenet_transform`),
//! - wasmserve, fast (`fastImageDecode: true`: DCT-domain downscaling in the decode),
//! - the built-in image_classifier's whole preprocess in the sandbox, both modes,
//! - Pillow + torchvision in Python (`Image.open(bytes).convert("RGB")` then the
//!   transform), in a process of its own that times the same loop,
//!
//! taking turns, several rounds, the median of all; then the fast mode's effect on
//! MobileNetV2's answers for the shared photos (top-1 and top-3 against the exact
//! tensor's, libtorch in this process at one thread).
//!
//! `make bench-imaging` (Pillow and torchvision from the TorchServe venv that
//! bench/torchserve/setup.sh installs into ~/.cache/wasmserve).

#[path = "../tests/common/mod.rs"]
mod common;
mod report;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmserve::imaging::{self, Mode};

const ROUNDS: usize = 7;
const PER_ROUND: usize = 15;

/// The Python side: one `path count` line in, the `count` times in ms out, one line.
const PILLOW_LOOP: &str = r#"
import io, sys, time
import torch
from PIL import Image
from torchvision import transforms
torch.set_num_threads(1)
t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
import PIL
print(PIL.__version__, flush=True)
for line in sys.stdin:
    path, n = line.split()
    data = open(path, "rb").read()
    times = []
    for _ in range(int(n)):
        s = time.perf_counter()
        x = t(Image.open(io.BytesIO(data)).convert("RGB"))
        times.append((time.perf_counter() - s) * 1e3)
    print(" ".join(f"{v:.4f}" for v in times), flush=True)
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv_python() -> PathBuf {
    let out = Command::new(repo().join("bench/torchserve/setup.sh"))
        .env("WASMSERVE_ASSETS", common::assets())
        .stderr(Stdio::inherit())
        .output()
        .expect("running bench/torchserve/setup.sh");
    assert!(out.status.success(), "bench/torchserve/setup.sh failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/python")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_ms(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// libtorch's softmax over MobileNetV2's logits for `x`, at one thread.
fn probabilities(model: &tch::CModule, x: &wasmserve_handler::Tensor) -> Vec<f32> {
    let input = tch::Tensor::from_slice(&x.to_vec::<f32>().unwrap()).view([1, 3, 224, 224]);
    let logits = tch::no_grad(|| model.forward_ts(&[input])).unwrap();
    logits
        .softmax(-1, tch::Kind::Float)
        .view([-1])
        .try_into()
        .unwrap()
}

fn top(p: &[f32], k: usize) -> Vec<usize> {
    let mut i: Vec<usize> = (0..p.len()).collect();
    i.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    i.truncate(k);
    i
}

fn main() {
    let images = [
        (
            "kitten.jpg (720x720)",
            "kitten",
            common::asset("images/kitten.jpg"),
        ),
        (
            "large_2400x1600.jpg",
            "large",
            repo().join("tests/fixtures/torchvision/synthetic/large_2400x1600.jpg"),
        ),
    ];
    let python = venv_python();
    // One OpenMP thread, passive: torch's pool would otherwise spin on the second core
    // after each of Python's turns and slow whichever side runs next.
    let mut pillow = Command::new(&python)
        .args(["-c", PILLOW_LOOP])
        .env("OMP_NUM_THREADS", "1")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting Python");
    let mut to_py = pillow.stdin.take().unwrap();
    let mut from_py = BufReader::new(pillow.stdout.take().unwrap());
    let mut line = String::new();
    from_py.read_line(&mut line).unwrap();
    let pillow_version = line.trim().to_string();

    let dir = tempfile::tempdir().unwrap();
    let (_runtime, component, mut sandbox) =
        common::builtin_sandbox("image_classifier", dir.path());
    let mut exact_instance = component.instantiate(&sandbox).unwrap();
    sandbox.image_mode = Mode::Fast;
    let mut fast_instance = component.instantiate(&sandbox).unwrap();

    let mut r = report::Report::new("imaging");
    r.line("## The image path against Pillow (`make bench-imaging`)");
    r.line("");
    r.line(format!(
        "torchvision's ImageNet transform of one JPEG, median ms of {} ({ROUNDS} rounds taking turns); Pillow {pillow_version}, 1 thread.",
        ROUNDS * PER_ROUND,
    ));
    r.line("");
    r.line(
        "| image | wasmserve exact | wasmserve fast | Pillow + torchvision | exact / Pillow | fast / Pillow | image_classifier preprocess in the sandbox, exact / fast |",
    );
    r.line("|---|---:|---:|---:|---:|---:|---:|");
    for (name, key, path) in &images {
        let bytes = std::fs::read(path).unwrap();
        let request = common::body_request(bytes.clone());
        let (mut exact, mut fast, mut py, mut sb_exact, mut sb_fast) =
            (vec![], vec![], vec![], vec![], vec![]);
        // Warm-up of every side.
        for _ in 0..3 {
            imaging::imagenet_transform(&bytes, Mode::Exact).unwrap();
            imaging::imagenet_transform(&bytes, Mode::Fast).unwrap();
        }
        writeln!(to_py, "{} 3", path.display()).unwrap();
        line.clear();
        from_py.read_line(&mut line).unwrap();
        // Each round starts with another side, so that none always follows the same one.
        for round in 0..ROUNDS {
            for turn in 0..5 {
                match (round + turn) % 5 {
                    0 => exact.extend(time_ms(PER_ROUND, || {
                        std::hint::black_box(
                            imaging::imagenet_transform(&bytes, Mode::Exact).unwrap(),
                        );
                    })),
                    1 => fast.extend(time_ms(PER_ROUND, || {
                        std::hint::black_box(
                            imaging::imagenet_transform(&bytes, Mode::Fast).unwrap(),
                        );
                    })),
                    2 => {
                        writeln!(to_py, "{} {PER_ROUND}", path.display()).unwrap();
                        line.clear();
                        from_py.read_line(&mut line).unwrap();
                        py.extend(line.split_whitespace().map(|v| v.parse::<f64>().unwrap()));
                    }
                    3 => sb_exact.extend(time_ms(PER_ROUND, || {
                        std::hint::black_box(
                            exact_instance.preprocess(&request, None).unwrap().unwrap(),
                        );
                    })),
                    _ => sb_fast.extend(time_ms(PER_ROUND, || {
                        std::hint::black_box(
                            fast_instance.preprocess(&request, None).unwrap().unwrap(),
                        );
                    })),
                }
            }
        }
        let (e, f, p) = (median(exact), median(fast), median(py));
        r.line(format!(
            "| {name} | {e:.2} | {f:.2} | {p:.2} | {:.2}× | {:.2}× | {:.2} / {:.2} |",
            e / p,
            f / p,
            median(sb_exact),
            median(sb_fast)
        ));
        r.figure(format!("{key}.exact_ms"), e);
        r.figure(format!("{key}.fast_ms"), f);
        r.figure(format!("{key}.pillow_ms"), p);
    }
    drop(to_py);
    let _ = pillow.wait_timeout_or_kill();

    // The fast mode's effect on the answers.
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::asset("images/index_to_name.json")).unwrap())
            .unwrap();
    let label = |i: usize| labels[i.to_string()][1].as_str().unwrap().to_string();
    tch::set_num_threads(1);
    let mut model = tch::CModule::load(common::asset("models/mobilenet_v2_quantized.pt")).unwrap();
    model.set_eval();
    r.line("");
    r.line(
        "MobileNetV2 (int8) on the shared photos, exact against fastImageDecode (libtorch, 1 thread).",
    );
    r.line("");
    r.line(
        "| image | exact top-1 | fast top-1 | same top-3 | largest value difference (levels of 255) |",
    );
    r.line("|---|---|---|---|---:|");
    let mut shared: Vec<PathBuf> = [
        "Dog1.jpg",
        "Dog2.jpg",
        "croco.jpg",
        "dog.jpg",
        "kitten.jpg",
        "kitten_small.jpg",
        "wolf.png",
    ]
    .iter()
    .map(|n| common::asset(&format!("images/{n}")))
    .collect();
    let mut asl: Vec<PathBuf> = std::fs::read_dir(common::assets().join("images/asl"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    asl.sort();
    shared.extend(asl.into_iter().take(3));
    for path in shared {
        let bytes = std::fs::read(&path).unwrap();
        let exact = imaging::imagenet_transform(&bytes, Mode::Exact).unwrap();
        let fast = imaging::imagenet_transform(&bytes, Mode::Fast).unwrap();
        let worst = exact
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .zip(fast.to_vec::<f32>().unwrap())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
            * 255.0
            * 0.226;
        let (pe, pf) = (probabilities(&model, &exact), probabilities(&model, &fast));
        let (te, tf) = (top(&pe, 3), top(&pf, 3));
        r.line(format!(
            "| {} | {} {:.3} | {} {:.3} | {} | {worst:.1} |",
            path.file_name().unwrap().to_string_lossy(),
            label(te[0]),
            pe[te[0]],
            label(tf[0]),
            pf[tf[0]],
            if te == tf { "yes" } else { "no" },
        ));
    }
    r.line("");
    r.save();
}

trait WaitOrKill {
    fn wait_timeout_or_kill(&mut self) -> std::io::Result<()>;
}

impl WaitOrKill for std::process::Child {
    /// The Python loop ends when its stdin closes; if it has not within a few seconds,
    /// it is killed.
    fn wait_timeout_or_kill(&mut self) -> std::io::Result<()> {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill()
    }
}
