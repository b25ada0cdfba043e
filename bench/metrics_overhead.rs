//! What metrics cost: kitten latency at concurrency 1 with the metrics API on (the
//! default) and off (`enable_metrics_api=false`), two servers side by side, requests
//! alternated between them so that both see the same machine; medians of 200.
//!
//! `cargo bench --bench metrics_overhead`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn main() {
    let store = ModelStore::new();
    store.mobilenet();
    let on = Server::start(store.path(), &["mobilenet.mar"], "");
    let off = Server::start(store.path(), &["mobilenet.mar"], "enable_metrics_api=false");
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let http = client();
    let time = |server: &Server| {
        let t = Instant::now();
        let resp = http
            .post(server.url("/predictions/mobilenet"))
            .body(kitten.clone())
            .send()
            .unwrap();
        assert!(resp.status().is_success());
        resp.bytes().unwrap();
        t.elapsed()
    };
    const WARMUP: usize = 20;
    const RUNS: usize = 200;
    let (mut t_on, mut t_off): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + RUNS {
        // Alternate which goes first, so that neither always follows the other.
        let (a, b) = if i % 2 == 0 {
            (time(&on), time(&off))
        } else {
            let b = time(&off);
            (time(&on), b)
        };
        if i >= WARMUP {
            t_on.push(a);
            t_off.push(b);
        }
    }
    t_on.sort();
    t_off.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (on_ms, off_ms) = (ms(t_on[RUNS / 2]), ms(t_off[RUNS / 2]));
    println!("kitten.jpg, mobilenet_v2_quantized.pt, concurrency 1, median of {RUNS}");
    println!("| metrics | ms |");
    println!("|---|---:|");
    println!("| on (default) | {on_ms:.3} |");
    println!("| off (enable_metrics_api=false) | {off_ms:.3} |");
    println!(
        "overhead: {:+.3} ms ({:+.2}%)",
        on_ms - off_ms,
        100.0 * (on_ms - off_ms) / off_ms
    );
}
