//! Model lifecycle figures, one run: the server's RSS with one model version served by
//! 1 and by 4 workers (all sharing one TorchScript module), and how long registering
//! `mobilenet_v2_quantized` through the management API takes until its first answer.
//!
//! `cargo bench --bench lifecycle`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;

/// Sends `n` kitten predictions from `n` threads at once, so that every worker works.
fn load(server: &Server, n: usize) {
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (url, body) = (server.url("/predictions/mobilenet"), kitten.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    assert!(
                        client()
                            .post(&url)
                            .body(body.clone())
                            .send()
                            .unwrap()
                            .status()
                            .is_success()
                    );
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

fn main() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(
        store.path(),
        &[],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let pid = server.pid();
    let idle = vm_rss_mib(pid);

    let t = Instant::now();
    let resp = client()
        .post(server.mgmt("/models?url=mobilenet.mar&initial_workers=1&synchronous=true"))
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    assert!(
        server
            .post("/predictions/mobilenet", kitten)
            .status()
            .is_success()
    );
    let register = t.elapsed();

    load(&server, 8);
    let one = vm_rss_mib(pid);
    let scaled = client()
        .put(server.mgmt("/models/mobilenet?min_worker=4&max_worker=4&synchronous=true"))
        .send()
        .unwrap();
    assert!(scaled.status().is_success());
    load(&server, 8);
    let four = vm_rss_mib(pid);

    println!("| what | figure |");
    println!("|---|---:|");
    println!("| server RSS, no model | {idle:.0} MiB |");
    println!("| server RSS, mobilenet_v2_quantized, 1 worker (after load) | {one:.0} MiB |");
    println!("| server RSS, same version, 4 workers (after load) | {four:.0} MiB |");
    println!("| each extra worker | {:.1} MiB |", (four - one) / 3.0);
    println!(
        "| register (POST /models, synchronous) until the first answer | {} ms |",
        register.as_millis()
    );
}
