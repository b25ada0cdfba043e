//! The example pipeline and workflow against the forwards they run, called directly:
//! per-request time at concurrency 1 on one keep-alive connection, the server's
//! requests and the in-process forwards taking turns in one run.
//!
//! - `examples/mnist_number` reading a ten-digit PNG (decode, ten crops, one batched
//!   `models.infer` of `[10, 1, 28, 28]` on vit4mnist) against: that forward in this
//!   process; the same tensor as one KServe v2 request; the ten digits as ten
//!   `/predictions/mnist` requests, one after another (what a client does without a
//!   pipeline).
//! - `examples/workflow_join` (`/wfpredict`: a function node, MobileNetV2 and the ASL
//!   model in parallel, a joining function node) on an ASL photo, against: the two
//!   forwards one after the other in this process; the two `/predictions` requests one
//!   after the other (what a client does without a workflow).
//!
//! `cargo bench --bench pipeline` (`make bench-pipeline`; about two minutes).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::keepalive::KeepAlive;
use common::*;
use serde_json::json;

const THREADS: usize = 1;
const NUMBER: &str = "0123456789";
const WORKFLOW: &str = "models:
  min-workers: 1
  max-workers: 1
  batch-size: 1
  timeout-ms: 60000
  mobilenet:
    url: mobilenet.mar
  asl:
    url: asl.mar
dag:
  pre: [mobilenet, asl]
  mobilenet: [join]
  asl: [join]
";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn must(out: std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The forwards, called directly on a thread of their own at THREADS, as a lane runs
/// them: `0` vit4mnist on the ten digits, `1` MobileNetV2 then the ASL model.
fn forwarder(
    jobs: std::sync::mpsc::Receiver<u8>,
    done: std::sync::mpsc::Sender<Duration>,
    digits: Vec<f32>,
) {
    tch::set_num_threads(THREADS as i32);
    let load = |rel: &str| {
        let mut m = tch::CModule::load(asset(rel)).unwrap();
        m.set_eval();
        m
    };
    let (vit, mobilenet, asl) = (
        load("models/vit4mnist.ptl"),
        load("models/mobilenet_v2_quantized.pt"),
        load("models/asl.ptl"),
    );
    let x_digits = tch::Tensor::from_slice(&digits).view([10, 1, 28, 28]);
    let x_imagenet = tch::Tensor::from_slice(&v2_input_values()).view([1, 3, 224, 224]);
    let x_asl = tch::Tensor::rand([1, 3, 200, 200], (tch::Kind::Float, tch::Device::Cpu)) * 255.0;
    let run = |m: &tch::CModule, x: &tch::Tensor| {
        let out = tch::no_grad(|| m.forward_ts(&[x])).unwrap();
        std::hint::black_box(Vec::<f32>::try_from(out.view([-1])).unwrap());
    };
    for job in jobs {
        let t = Instant::now();
        if job == 0 {
            run(&vit, &x_digits);
        } else {
            run(&mobilenet, &x_imagenet);
            run(&asl, &x_asl);
        }
        done.send(t.elapsed()).unwrap();
    }
}

fn main() {
    let store = ModelStore::new();
    store.mnist();
    store.mobilenet();
    store.archive(
        "asl",
        &asset("models/asl.ptl"),
        guest("asl_handler").to_str().unwrap(),
        &[],
    );
    store.pipeline("number", "mnist_number", "models: [mnist]\n");
    let dir = store.path().to_str().unwrap();
    let spec = store.path().join("classify.yaml");
    std::fs::write(&spec, WORKFLOW).unwrap();
    must(wasmserve(&[
        "workflow-archive",
        "--workflow-name",
        "classify",
        "--spec-file",
        spec.to_str().unwrap(),
        "--handler",
        guest("workflow_join").to_str().unwrap(),
        "--export-path",
        dir,
    ]));
    let server = Server::start(
        store.path(),
        &["mnist.mar", "number.mar", "mobilenet.mar", "asl.mar"],
        &format!("intra_op_threads={THREADS}\nenable_model_api=true"),
    );
    let (status, body) = json(
        client()
            .post(server.mgmt("/workflows?url=classify.war"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");

    let digits = mnist_batch(NUMBER);
    let mut conn = KeepAlive::connect(&server.base);
    let png = |rel: String| std::fs::read(asset(&rel)).unwrap();
    let photo = png("images/asl/A1.jpg".into());
    let number_req = vec![conn.request("/predictions/number", &[], &written_number(NUMBER, 1))];
    let v2_req = vec![
        conn.request(
            "/v2/models/mnist/infer",
            &["Content-Type: application/json"],
            &serde_json::to_vec(
                &json!({"inputs": [{"name": "input__0", "shape": [10, 1, 28, 28],
            "datatype": "FP32", "data": digits}]}),
            )
            .unwrap(),
        ),
    ];
    let ten_reqs: Vec<Vec<u8>> = NUMBER
        .chars()
        .map(|d| {
            conn.request(
                "/predictions/mnist",
                &[],
                &png(format!("images/mnist/{d}.png")),
            )
        })
        .collect();
    let wf_req = vec![conn.request("/wfpredict/classify", &[], &photo)];
    let two_reqs = vec![
        conn.request("/predictions/mobilenet", &[], &photo),
        conn.request("/predictions/asl", &[], &photo),
    ];
    let answer: serde_json::Value =
        serde_json::from_slice(&conn.send(&number_req[0]).body).unwrap();
    assert_eq!(answer["number"], json!(NUMBER), "{answer}");
    let answer: serde_json::Value = serde_json::from_slice(&conn.send(&wf_req[0]).body).unwrap();
    assert_eq!(answer["top"]["asl"], json!("A"), "{answer}");

    let (to_fwd, jobs) = std::sync::mpsc::channel::<u8>();
    let (done, from_fwd) = std::sync::mpsc::channel::<Duration>();
    let thread = std::thread::spawn(move || forwarder(jobs, done, digits));
    let forward = |job: u8| {
        to_fwd.send(job).unwrap();
        from_fwd.recv().unwrap()
    };
    let mut send = |reqs: &[Vec<u8>]| {
        let t = Instant::now();
        for r in reqs {
            std::hint::black_box(conn.send(r).body);
        }
        t.elapsed()
    };
    // The ways, in the order they are timed in each turn.
    let server_ways: [&[Vec<u8>]; 5] = [&number_req, &v2_req, &ten_reqs, &wf_req, &two_reqs];
    for _ in 0..5 {
        for w in server_ways {
            send(w);
        }
        forward(0);
        forward(1);
    }
    let (rounds, per_round) = (7, 10);
    let mut medians = vec![Vec::new(); server_ways.len() + 2];
    for _ in 0..rounds {
        let mut times = vec![Vec::new(); medians.len()];
        for _ in 0..per_round {
            for (i, w) in server_ways.iter().enumerate() {
                times[i].push(send(w));
            }
            times[5].push(forward(0));
            times[6].push(forward(1));
        }
        for (m, t) in medians.iter_mut().zip(times) {
            m.push(median(t));
        }
    }
    drop(to_fwd);
    thread.join().unwrap();
    let m: Vec<Duration> = medians.into_iter().map(median).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let row = |what: &str, d: Duration, base: Duration| {
        println!(
            "| {what} | {:.2} | {:.2} |",
            ms(d),
            d.as_secs_f64() / base.as_secs_f64()
        );
    };
    println!(
        "concurrency 1, {THREADS} intra-op thread(s) per lane, keep-alive; medians of {rounds} \
         rounds of {per_round}, the server's requests and the in-process forwards in turns\n"
    );
    println!("| per request | ms | × the forwards called directly |");
    println!("|---|---:|---:|");
    row(
        "**mnist_number**: the `[10, 1, 28, 28]` vit4mnist forward, called directly",
        m[5],
        m[5],
    );
    row(
        "the same tensor as one KServe v2 request (JSON)",
        m[1],
        m[5],
    );
    row(
        "the pipeline: a PNG of ten digits in, crops, one batched `models.infer`",
        m[0],
        m[5],
    );
    row(
        "without a pipeline: ten `/predictions/mnist` requests, one per digit",
        m[2],
        m[5],
    );
    row(
        "**workflow_join**: the MobileNetV2 and ASL forwards, one after the other, called directly",
        m[6],
        m[6],
    );
    row(
        "the workflow: `/wfpredict`, pre → (mobilenet ∥ asl) → join",
        m[3],
        m[6],
    );
    row(
        "without a workflow: `/predictions/mobilenet` then `/predictions/asl`",
        m[4],
        m[6],
    );
}
