//! gRPC against REST on one server, in one run, taking turns:
//!
//! 1. the kitten through MobileNetV2 (`image_classifier`): TorchServe's gRPC
//!    `Predictions` against `POST /predictions/mobilenet`, latency at concurrency 1
//!    (medians of rounds) and throughput at concurrency 16;
//! 2. the streaming example (`stream_classifier` over vit4mnist, the ten MNIST digits
//!    in one request, one answer streamed per digit): the time to the first piece
//!    against the time to the last, over chunked HTTP and over `StreamPredictions`.
//!
//! Both clients are Rust and as thin as can be, one connection per client: REST a plain
//! keep-alive HTTP/1.1 connection (`tests/common/keepalive.rs`), gRPC a tonic channel
//! (one HTTP/2 connection) driven by a current-thread runtime on the client's own
//! thread, so that neither side pays a hop to another thread.
//!
//! `cargo bench --bench grpc` (`make bench-grpc`; about a minute).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::keepalive::KeepAlive;
use common::*;
use http::uri::PathAndQuery;
use tonic::transport::Channel;
use wasmserve::frontend::grpc::proto::ts_inference::{PredictionResponse, PredictionsRequest};

const PREDICTIONS: &str = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions";
const STREAM: &str = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/StreamPredictions";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

type Codec = tonic_prost::ProstCodec<PredictionsRequest, PredictionResponse>;

async fn unary(channel: &Channel, req: &PredictionsRequest) -> PredictionResponse {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(req.clone()),
        PathAndQuery::from_static(PREDICTIONS),
        Codec::default(),
    )
    .await
    .unwrap()
    .into_inner()
}

/// A `StreamPredictions` call: the time to its first message and to its end, and the
/// number of messages.
async fn streamed(channel: &Channel, req: &PredictionsRequest) -> (Duration, Duration, usize) {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let started = Instant::now();
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(req.clone()),
            PathAndQuery::from_static(STREAM),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let (mut first, mut n) = (None, 0);
    while let Some(message) = stream.message().await.unwrap() {
        std::hint::black_box(message);
        first.get_or_insert_with(|| started.elapsed());
        n += 1;
    }
    (first.unwrap(), started.elapsed(), n)
}

fn request(model: &str, input: Vec<(&str, Vec<u8>)>) -> PredictionsRequest {
    PredictionsRequest {
        model_name: model.into(),
        model_version: String::new(),
        input: input.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        sequence_id: None,
    }
}

/// Completed calls in `window` with `clients` at once, `call(i)` making each.
fn throughput(clients: usize, window: Duration, call: impl Fn(usize) + Sync) -> f64 {
    let done = AtomicUsize::new(0);
    let until = Instant::now() + window;
    std::thread::scope(|s| {
        for i in 0..clients {
            let (done, call) = (&done, &call);
            s.spawn(move || {
                while Instant::now() < until {
                    call(i);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

fn main() {
    let store = ModelStore::new();
    store.mobilenet();
    store.digit_streamer();
    let workers = wasmserve::config::num_cores();
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar", "streamer=streamer.mar"],
        "intra_op_threads=1",
    );
    // A gRPC client: its runtime (run on the calling thread) and its connection.
    let grpc_client = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt.block_on(async {
            Channel::from_shared(format!("http://{}", server.grpc))
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        (rt, channel)
    };
    let (rt, channel) = grpc_client();
    let kitten = kitten_jpg();
    let grpc_kitten = request("mobilenet", vec![("data", kitten.clone())]);
    let rest_conn = std::cell::RefCell::new(KeepAlive::connect(&server.base));
    let rest_kitten = rest_conn.borrow().request(
        "/predictions/mobilenet",
        &["Content-Type: image/jpeg"],
        &kitten,
    );
    // The same answer both ways.
    let a = rest_conn.borrow_mut().send(&rest_kitten).body;
    let b = rt.block_on(unary(&channel, &grpc_kitten)).prediction;
    assert_eq!(a, b, "REST and gRPC disagree");

    // 1a. Latency at concurrency 1, in turns.
    let timed = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let rest_once = || {
        std::hint::black_box(rest_conn.borrow_mut().send(&rest_kitten).body);
    };
    let grpc_once = || {
        std::hint::black_box(rt.block_on(unary(&channel, &grpc_kitten)));
    };
    for _ in 0..10 {
        rest_once();
        grpc_once();
    }
    let (mut rest, mut grpc) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let (mut r, mut g) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            r.push(timed(&rest_once));
            g.push(timed(&grpc_once));
        }
        rest.push(median(r));
        grpc.push(median(g));
    }
    let (rest_c1, grpc_c1) = (median(rest), median(grpc));

    // 1b. Throughput at concurrency 16, in turns (three windows each).
    let clients = 16;
    let conns: Vec<std::sync::Mutex<KeepAlive>> = (0..clients)
        .map(|_| std::sync::Mutex::new(KeepAlive::connect(&server.base)))
        .collect();
    let rest_call = |i: usize| {
        std::hint::black_box(conns[i].lock().unwrap().send(&rest_kitten).body);
    };
    let grpc_clients: Vec<std::sync::Mutex<_>> = (0..clients)
        .map(|_| std::sync::Mutex::new(grpc_client()))
        .collect();
    let grpc_call = |i: usize| {
        let client = grpc_clients[i].lock().unwrap();
        std::hint::black_box(client.0.block_on(unary(&client.1, &grpc_kitten)));
    };
    let window = Duration::from_secs(4);
    let (mut rest_t, mut grpc_t) = (Vec::new(), Vec::new());
    throughput(clients, Duration::from_secs(1), rest_call);
    throughput(clients, Duration::from_secs(1), grpc_call);
    for _ in 0..3 {
        rest_t.push(throughput(clients, window, rest_call));
        grpc_t.push(throughput(clients, window, grpc_call));
    }
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rest_c16, grpc_c16) = (mid(rest_t), mid(grpc_t));

    // 2. The streaming example: ten digits, one piece each.
    let digits: Vec<(String, Vec<u8>)> = (0..10)
        .map(|d| {
            (
                format!("d{d}"),
                std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap(),
            )
        })
        .collect();
    let (content_type, form) = multipart(&digits);
    let rest_stream = rest_conn.borrow().request(
        "/predictions/streamer",
        &[&format!("Content-Type: {content_type}")],
        &form,
    );
    let grpc_stream = request(
        "streamer",
        digits
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect(),
    );
    let (mut rest_first, mut rest_total, mut grpc_first, mut grpc_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pieces = (0, 0);
    for round in 0..25 {
        let t = Instant::now();
        let answer = rest_conn.borrow_mut().send(&rest_stream);
        let total = t.elapsed();
        let (first, all, n) = rt.block_on(streamed(&channel, &grpc_stream));
        if round >= 5 {
            rest_first.push(answer.first_chunk);
            rest_total.push(total);
            grpc_first.push(first);
            grpc_total.push(all);
        }
        pieces = (answer.chunks, n);
    }
    assert_eq!(pieces, (10, 10), "one piece per digit both ways");

    println!(
        "Kitten through MobileNetV2 int8 (image_classifier), one server ({workers} workers, 1 intra-op thread each); REST and gRPC in turns"
    );
    println!("| | REST `/predictions` | gRPC `Predictions` | gRPC / REST |");
    println!("|---|---:|---:|---:|");
    println!(
        "| latency at concurrency 1 (median) | {:.2} ms | {:.2} ms | {:.3}× |",
        ms(rest_c1),
        ms(grpc_c1),
        grpc_c1.as_secs_f64() / rest_c1.as_secs_f64()
    );
    println!(
        "| throughput at concurrency 16 | {rest_c16:.1} req/s | {grpc_c16:.1} req/s | {:.3}× |",
        grpc_c16 / rest_c16
    );
    println!();
    println!(
        "Streaming example: ten MNIST digits in one request through stream_classifier (vit4mnist), one piece per digit; medians of 20"
    );
    println!("| | first piece | last piece | first / last |");
    println!("|---|---:|---:|---:|");
    for (name, first, total) in [
        (
            "chunked HTTP `/predictions`",
            median(rest_first),
            median(rest_total),
        ),
        (
            "gRPC `StreamPredictions`",
            median(grpc_first),
            median(grpc_total),
        ),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} |",
            ms(first),
            ms(total),
            first.as_secs_f64() / total.as_secs_f64()
        );
    }
}
