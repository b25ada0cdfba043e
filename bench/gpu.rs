//! The device check (issue 18): ResNet-18 fp32 served by wasmserve with batching at
//! batch 1, 8 and 32 against raw libtorch batched throughput on the same device in the
//! same run, plus latency at concurrency 1.
//!
//! - The model: tch's ResNet-18 definition with random weights (a forward's time does
//!   not depend on them), traced here and saved as TorchScript.
//! - Raw libtorch: this process loads that file with the same libtorch as the server
//!   and runs `[B, 3, 224, 224]` forwards back to back, each from a host tensor copied
//!   to the device and its output copied back (what a server must do too).
//! - Served: three models of that file (`m1`, `m8`, `m32`: `batchSize` 1, 8, 32,
//!   `maxBatchDelay` 5 ms, 2 workers, on the device) behind one server, driven over
//!   KServe v2 binary tensors (one image per request, the handler bypassed) by 2 × B
//!   keep-alive clients, so that both workers can fill their batches.
//!
//! Run it with `bench/gpu.sh` (builds nothing; carries over to the GPU machine), or
//! here, on the CPU, to check the mechanics:
//! `cargo bench --bench gpu -- --device cpu --seconds 2 --batches 1,4`.

// Only its client is used here.
#[allow(dead_code)]
#[path = "../tests/common/keepalive.rs"]
mod keepalive;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

struct Options {
    wasmserve: PathBuf,
    device: tch::Device,
    seconds: f64,
    batches: Vec<usize>,
    workers: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        wasmserve: std::env::var_os("WASMSERVE_BIN")
            .map(PathBuf::from)
            .or_else(|| option_env!("CARGO_BIN_EXE_wasmserve").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("wasmserve")),
        device: tch::Device::cuda_if_available(),
        seconds: 5.0,
        batches: vec![1, 8, 32],
        workers: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--wasmserve" => o.wasmserve = value()?.into(),
            "--device" => {
                o.device = match value()?.as_str() {
                    "cpu" => tch::Device::Cpu,
                    "cuda" => tch::Device::Cuda(0),
                    other => bail!("--device cpu|cuda, not {other}"),
                }
            }
            "--seconds" => o.seconds = value()?.parse()?,
            "--workers" => o.workers = value()?.parse()?,
            "--batches" => {
                o.batches = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            // cargo bench passes --bench.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if o.device.is_cuda() && !tch::Cuda::is_available() {
        bail!("--device cuda, but libtorch sees no CUDA device (a CPU build, or no driver)");
    }
    Ok(o)
}

/// ResNet-18 (He et al. 2015; torchvision's layout) with random weights, traced and
/// saved as `dir/resnet18.pt`. Written out here rather than taken from
/// `tch::vision::resnet`, whose final `flat_view` reads the batch size in Rust, so that
/// a trace would fix it: this one flattens with `flatten(1, -1)` and takes any batch.
fn resnet18(dir: &Path) -> anyhow::Result<PathBuf> {
    use tch::nn::{self, ModuleT};
    fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64) -> nn::Conv2D {
        let cfg = nn::ConvConfig {
            stride,
            padding: k / 2,
            bias: false,
            ..Default::default()
        };
        nn::conv2d(p, i, o, k, cfg)
    }
    fn block(p: nn::Path, i: i64, o: i64, stride: i64) -> impl ModuleT + use<> {
        let (c1, b1) = (
            conv(&p / "conv1", i, o, 3, stride),
            nn::batch_norm2d(&p / "bn1", o, Default::default()),
        );
        let (c2, b2) = (
            conv(&p / "conv2", o, o, 3, 1),
            nn::batch_norm2d(&p / "bn2", o, Default::default()),
        );
        let down = (stride != 1 || i != o).then(|| {
            (
                conv(&p / "downsample" / "0", i, o, 1, stride),
                nn::batch_norm2d(&p / "downsample" / "1", o, Default::default()),
            )
        });
        nn::func_t(move |x, t| {
            let y = x
                .apply(&c1)
                .apply_t(&b1, t)
                .relu()
                .apply(&c2)
                .apply_t(&b2, t);
            let skip = match &down {
                Some((c, b)) => x.apply(c).apply_t(b, t),
                None => x.shallow_clone(),
            };
            (y + skip).relu()
        })
    }
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let (stem, bn, layers, fc) = {
        let root = vs.root();
        let stem = conv(&root / "conv1", 3, 64, 7, 2);
        let bn = nn::batch_norm2d(&root / "bn1", 64, Default::default());
        let mut layers = nn::seq_t();
        for (n, (i, o, stride)) in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
            .into_iter()
            .enumerate()
        {
            let p = &root / format!("layer{}", n + 1);
            layers = layers
                .add(block(&p / "0", i, o, stride))
                .add(block(&p / "1", o, o, 1));
        }
        let fc = nn::linear(&root / "fc", 512, 1000, Default::default());
        (stem, bn, layers, fc)
    };
    vs.freeze();
    let net = move |x: &tch::Tensor| {
        x.apply(&stem)
            .apply_t(&bn, false)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&layers, false)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&fc)
    };
    let x = tch::Tensor::randn([2, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu));
    let mut f = |xs: &[tch::Tensor]| vec![net(&xs[0])];
    let module = tch::CModule::create_by_tracing("Model", "forward", &[x], &mut f)?;
    let path = dir.join("resnet18.pt");
    module.save(&path)?;
    // Any batch: checked at a size other than the trace's.
    let check = tch::CModule::load(&path)?;
    let y = check.forward_ts(&[tch::Tensor::zeros(
        [3, 3, 224, 224],
        (tch::Kind::Float, tch::Device::Cpu),
    )])?;
    anyhow::ensure!(
        y.size() == [3, 1000],
        "the traced model gave {:?} for a batch of 3",
        y.size()
    );
    Ok(path)
}

/// Raw libtorch: images per second at batch `b`, and the median time of one forward.
fn raw(
    model: &Path,
    device: tch::Device,
    b: usize,
    seconds: f64,
) -> anyhow::Result<(f64, Duration)> {
    let mut m = tch::CModule::load_on_device(model, device)?;
    m.set_eval();
    let x = tch::Tensor::randn(
        [b as i64, 3, 224, 224],
        (tch::Kind::Float, tch::Device::Cpu),
    );
    let once = || -> anyhow::Result<()> {
        let out = tch::no_grad(|| m.forward_ts(&[x.to_device(device)]))?;
        let _ = std::hint::black_box(out.to_device(tch::Device::Cpu));
        Ok(())
    };
    for _ in 0..5 {
        once()?;
    }
    let (start, mut times) = (Instant::now(), Vec::new());
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        once()?;
        times.push(t.elapsed());
    }
    let images = (times.len() * b) as f64 / start.elapsed().as_secs_f64();
    Ok((images, percentile(&mut times, 0.5)))
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(o: &Options, store: &Path, model: &Path) -> anyhow::Result<Served> {
    let device_type = if o.device.is_cuda() { "gpu" } else { "cpu" };
    let mut names = Vec::new();
    for &b in &o.batches {
        let yaml = store.join(format!("m{b}.yaml"));
        std::fs::write(
            &yaml,
            format!(
                "batchSize: {b}\nmaxBatchDelay: 5\nminWorkers: {w}\nmaxWorkers: {w}\n\
                 deviceType: {device_type}\ninput:\n  - name: input__0\n    data_type: TYPE_FP32\n    \
                 dims: [3, 224, 224]\noutput:\n  - name: output__0\n    data_type: TYPE_FP32\n    \
                 dims: [1000]\n",
                w = o.workers
            ),
        )?;
        let status = Command::new(&o.wasmserve)
            .args(["archive", "--model-name", &format!("m{b}"), "-v", "1.0"])
            .arg("--serialized-file")
            .arg(model)
            .args(["--handler", "base_handler", "--config-file"])
            .arg(&yaml)
            .arg("--export-path")
            .arg(store)
            .stdout(Stdio::null())
            .status()
            .context("running wasmserve archive")?;
        if !status.success() {
            bail!("wasmserve archive failed for m{b}");
        }
        names.push(format!("m{b}=m{b}.mar"));
    }
    let port = free_port();
    let addr = |p: u16| format!("http://127.0.0.1:{p}");
    let child = Command::new(&o.wasmserve)
        .args(["start", "--foreground", "--disable-token-auth", "--ncs"])
        .arg("--model-store")
        .arg(store)
        .arg("--log-dir")
        .arg(store.join("logs"))
        .args(["--models", &names.join(",")])
        .arg(format!("--set=inference_address={}", addr(port)))
        .arg(format!("--set=management_address={}", addr(free_port())))
        .arg(format!("--set=metrics_address={}", addr(free_port())))
        .arg(format!("--set=grpc_inference_port={}", free_port()))
        .arg(format!("--set=grpc_management_port={}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting wasmserve")?;
    let served = Served {
        child,
        base: format!("127.0.0.1:{port}"),
    };
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for &b in &o.batches {
        let url = format!("http://{}/v2/models/m{b}/ready", served.base);
        while !client.get(&url).send().is_ok_and(|r| r.status() == 200) {
            if Instant::now() > deadline {
                bail!("m{b} was not ready within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(served)
}

/// The bytes of one v2 binary request of one `[1, 3, 224, 224]` image, and its header's
/// length.
fn v2_request() -> (Vec<u8>, usize) {
    let raw: Vec<u8> = (0..3 * 224 * 224)
        .flat_map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 1.0).to_le_bytes())
        .collect();
    let header = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input__0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "parameters": {"binary_data_output": true},
    }))
    .unwrap();
    let len = header.len();
    ([header, raw].concat(), len)
}

/// Requests per second of `clients` keep-alive clients for `seconds`, and every
/// request's latency.
fn drive(base: &str, model: &str, clients: usize, seconds: f64) -> (f64, Vec<Duration>) {
    let (body, header_len) = v2_request();
    let start = Instant::now();
    let all: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let body = &body;
                s.spawn(move || {
                    let mut conn = keepalive::KeepAlive::connect(base);
                    let request = conn.request(
                        &format!("/v2/models/{model}/infer"),
                        &[
                            &format!("Inference-Header-Content-Length: {header_len}"),
                            "Content-Type: application/octet-stream",
                        ],
                        body,
                    );
                    let mut times = Vec::new();
                    while start.elapsed().as_secs_f64() < seconds {
                        let t = Instant::now();
                        std::hint::black_box(conn.send(&request).body);
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let times: Vec<Duration> = all.into_iter().flatten().collect();
    (times.len() as f64 / elapsed, times)
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let dir = tempfile::tempdir()?;
    let model = resnet18(dir.path())?;
    let device = match o.device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    };
    println!(
        "ResNet-18 fp32 on {device}; {} s per figure; served: {} workers, maxBatchDelay 5 ms, \
         KServe v2 binary tensors, 2 x B clients",
        o.seconds, o.workers
    );

    let store = dir.path().join("store");
    std::fs::create_dir_all(&store)?;
    let served = serve(&o, &store, &model)?;
    // Warm each served model (cuDNN picks its kernels per batch shape).
    for &b in &o.batches {
        drive(&served.base, &format!("m{b}"), 2 * b, 1.0);
    }

    println!("| batch | raw libtorch img/s | served img/s | served / raw |");
    println!("|---:|---:|---:|---:|");
    let mut figures = Vec::new();
    for &b in &o.batches {
        let (raw_ips, _) = raw(&model, o.device, b, o.seconds)?;
        let (served_ips, _) = drive(&served.base, &format!("m{b}"), 2 * b, o.seconds);
        println!(
            "| {b} | {raw_ips:.0} | {served_ips:.0} | {:.2} |",
            served_ips / raw_ips
        );
        figures.push((b, raw_ips, served_ips));
    }
    if let (Some(first), Some(last)) = (figures.first(), figures.last())
        && figures.len() > 1
    {
        println!(
            "batching: served batch {} / batch {} = {:.2}x",
            last.0,
            first.0,
            last.2 / first.2
        );
    }

    // Latency at concurrency 1: one client, the batch-1 model; raw's single forward.
    let first = o.batches[0];
    let (_, raw_one) = raw(&model, o.device, 1, o.seconds.min(3.0))?;
    let (_, mut times) = drive(&served.base, &format!("m{first}"), 1, o.seconds.min(3.0));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "c=1 (m{first}): p50 {:.2} ms, p99 {:.2} ms over {} requests; raw libtorch batch-1 forward p50 {:.2} ms",
        ms(percentile(&mut times, 0.5)),
        ms(percentile(&mut times, 0.99)),
        times.len(),
        ms(raw_one)
    );
    drop(served);
    Ok(())
}
