//! The core under attack: nothing hangs, nothing is lost. Each test is one class of
//! failure an attack on the running server found (issue 13): the instance pool, bad
//! management calls, snapshots, versions without a runnable worker, stops that hang,
//! registry races, refused registrations, small leaks, and models the server cannot
//! run as it runs them. The real binary, real HTTP, real archives.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn call(method: reqwest::Method, url: String) -> (u16, serde_json::Value) {
    json(client().request(method, url).send().unwrap())
}

fn post(url: String) -> (u16, serde_json::Value) {
    call(reqwest::Method::POST, url)
}

/// `wasmserve start` over `store` restoring its snapshots.
fn restart(store: &ModelStore, env: &[(&str, &str)]) -> Server {
    Server::spawn(&store.restore_args(), env)
}

fn snapshot_files(store: &ModelStore) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(store.path().join("logs/config"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn model_names(server: &Server) -> Vec<String> {
    let (_, body) = call(reqwest::Method::GET, server.mgmt("/models"));
    body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["modelName"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. The instance pool is a documented limit, checked before anything changes.

#[test]
fn the_instance_pool_refuses_what_does_not_fit_before_anything_changes() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(
        store.path(),
        &["h.mar"],
        "max_handler_instances=3\nenable_model_api=true\ndefault_workers_per_model=1",
    );
    for name in ["h2", "h3"] {
        let (status, body) = post(server.mgmt(&format!("/models?url=h.mar&model_name={name}")));
        assert_eq!(status, 200, "{name}: {body}");
    }
    // The pool is full: a fourth version and a second worker are refused with the reason.
    let (status, body) = post(server.mgmt("/models?url=h.mar&model_name=h4"));
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("max_handler_instances"), "{message}");
    assert_eq!(call(reqwest::Method::GET, server.mgmt("/models/h4")).0, 404);
    for synchronous in ["true", "false"] {
        let (status, body) = call(
            reqwest::Method::PUT,
            server.mgmt(&format!(
                "/models/h?min_worker=2&max_worker=2&synchronous={synchronous}"
            )),
        );
        assert_eq!(status, 400, "synchronous={synchronous}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("max_handler_instances")
        );
    }
    let (_, d) = call(reqwest::Method::GET, server.mgmt("/models/h"));
    assert_eq!(
        (
            d[0]["minWorkers"].clone(),
            d[0]["workers"].as_array().unwrap().len()
        ),
        (json!(1), 1)
    );

    // With the pool full, a trap replaces the instance in the lane's own slot.
    for _ in 0..3 {
        let (status, _) = hostile_command(&server, "h", "trap");
        assert_eq!(status, 500);
        let (status, body) = hostile_command(&server, "h", "ok");
        assert_eq!(status, 200, "after a trap with the pool full: {body}");
    }
    let (_, d) = call(reqwest::Method::GET, server.mgmt("/models/h"));
    assert_eq!(d[0]["workers"][0]["status"], "READY", "{d}");
    assert_eq!(call(reqwest::Method::GET, server.url("/ping")).0, 200);

    // Scaling one down frees its slot.
    let (status, _) = call(
        reqwest::Method::PUT,
        server.mgmt("/models/h3?min_worker=0&max_worker=0&synchronous=true"),
    );
    assert_eq!(status, 200);
    let (status, body) = post(server.mgmt("/models?url=h.mar&model_name=h4"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn the_default_pool_serves_200_single_worker_versions() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(
        store.path(),
        &[],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let started = Instant::now();
    for i in 0..200 {
        let (status, body) = post(server.mgmt(&format!("/models?url=h.mar&model_name=m{i}")));
        assert_eq!(status, 200, "version {i}: {body}");
    }
    println!("200 registrations in {:?}", started.elapsed());
    for i in [0, 99, 199] {
        let (status, body) = hostile_command(&server, &format!("m{i}"), "ok");
        assert_eq!(status, 200, "m{i}: {body}");
    }
    assert_eq!(call(reqwest::Method::GET, server.url("/ping")).0, 200);
}

// ---------------------------------------------------------------------------------------
// 2. A bad management call is refused, and a snapshot records only states reached.

#[test]
fn a_scale_the_server_cannot_run_is_refused_and_never_persisted() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(store.path(), &["h.mar"], "default_workers_per_model=1");
    for synchronous in ["false", "true"] {
        let (status, body) = call(
            reqwest::Method::PUT,
            server.mgmt(&format!(
                "/models/h?min_worker=100000&synchronous={synchronous}"
            )),
        );
        assert_eq!(status, 400, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("100000") && message.contains("max_handler_instances"),
            "{message}"
        );
    }
    let (_, d) = call(reqwest::Method::GET, server.mgmt("/models/h"));
    assert_eq!(d[0]["minWorkers"], 1, "{d}");
    assert!(server.stop().success());
    for file in snapshot_files(&store) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("100000"), "{}: {text}", file.display());
    }
    let restored = restart(&store, &[]);
    let (_, d) = call(reqwest::Method::GET, restored.mgmt("/models/h"));
    assert_eq!(d[0]["workers"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(call(reqwest::Method::GET, restored.url("/ping")).0, 200);
}

// ---------------------------------------------------------------------------------------
// 3. Snapshots: the newest valid one is restored; a failed restore writes nothing; a
// crash while writing leaves the last whole one.

#[test]
fn unreadable_or_misdated_snapshots_are_skipped_and_the_history_kept() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(
        store.path(),
        &["h.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let (status, _) = post(server.mgmt("/models?url=h.mar&model_name=h2"));
    assert_eq!(status, 200);
    assert!(server.stop().success());
    let files = snapshot_files(&store);
    let good = std::fs::read_to_string(files.last().unwrap()).unwrap();
    let dir = store.path().join("logs/config");
    // A truncated copy as the newest by sequence, and an empty served set under a name
    // from the year 2999 with an old sequence number.
    std::fs::write(
        dir.join("20261201000000000-999998-snapshot.cfg"),
        &good[..good.len() * 2 / 3],
    )
    .unwrap();
    let empty = good
        .lines()
        .map(|l| match l.starts_with("model_snapshot=") {
            true => r#"model_snapshot={"name":"x","modelCount":0,"models":{}}"#.to_string(),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("29991231235959999-000000-snapshot.cfg"), empty).unwrap();
    let count = snapshot_files(&store).len();

    let restored = restart(&store, &[]);
    assert_eq!(model_names(&restored), ["h", "h2"]);
    assert!(
        restored.log().contains("skipping the snapshot") && restored.log().contains("999998"),
        "{}",
        restored.log()
    );
    assert_eq!(
        snapshot_files(&store).len(),
        count,
        "a restore that skipped a snapshot wrote one of its own"
    );
    // The next change is recorded after all of them, and is what the next start restores.
    let (status, _) = post(restored.mgmt("/models?url=h.mar&model_name=h3"));
    assert_eq!(status, 200);
    drop(restored);
    let again = restart(&store, &[]);
    assert_eq!(model_names(&again), ["h", "h2", "h3"]);
}

#[test]
fn a_server_killed_while_writing_a_snapshot_leaves_the_last_whole_one() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    // Every snapshot write pauses for 4 s half-way through its bytes.
    let server = Server::start_with_env(
        store.path(),
        &["h.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
        &[("WASMSERVE_TEST_SNAPSHOT_PAUSE_MS", "4000")],
    );
    let url = server.mgmt("/models?url=h.mar&model_name=h2");
    let registering = std::thread::spawn(move || client().post(url).send().map(|r| r.status()));
    std::thread::sleep(Duration::from_millis(2000));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    let _ = registering.join();
    drop(server);
    for file in snapshot_files(&store) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("-snapshot.cfg") {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.contains("model_snapshot="),
                "{name} was cut short:\n{text}"
            );
        }
    }
    let restored = restart(&store, &[]);
    assert_eq!(model_names(&restored), ["h"]);
    assert!(!restored.log().contains("skipping"), "{}", restored.log());
}

// ---------------------------------------------------------------------------------------
// 4. No runnable worker: answered at once.

#[test]
fn a_version_without_a_worker_answers_at_once() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\nresponseTimeout: 60\n");
    let server = Server::start(
        store.path(),
        &["h.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let (status, _) = call(
        reqwest::Method::PUT,
        server.mgmt("/models/h?min_worker=0&max_worker=0&synchronous=true"),
    );
    assert_eq!(status, 200);
    let started = Instant::now();
    let (status, body) = hostile_command(&server, "h", "ok");
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("has no worker"),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(10),
        "a 503 after {took:?}: it waited for a worker"
    );
    // TorchServe's /ping: healthy while every model has its minimum (0) of workers.
    assert_eq!(call(reqwest::Method::GET, server.url("/ping")).0, 200);

    // Unregistered while a request's body is still arriving: answered at once.
    let (status, _) = call(
        reqwest::Method::PUT,
        server.mgmt("/models/h?min_worker=1&max_worker=1&synchronous=true"),
    );
    assert_eq!(status, 200);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.write_all(
        b"POST /predictions/h HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\no",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = call(reqwest::Method::DELETE, server.mgmt("/models/h"));
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    conn.write_all(b"k").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = conn.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Stops are bounded: a forward that never returns, a FIFO named as an archive.

/// A model whose forward never returns (it counts for ever).
fn endless_model(dir: &std::path::Path) -> std::path::PathBuf {
    scripted_model(
        dir,
        "endless.pt",
        "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:
    i = 0
    while i >= 0:
      i = i + 1
    return x",
    )
}

#[test]
fn a_forward_that_never_returns_cannot_hang_unregister_or_stop() {
    let store = ModelStore::new();
    let dir = tempfile::tempdir().unwrap();
    let model = endless_model(dir.path());
    let yaml = "minWorkers: 1\nmaxWorkers: 1\nresponseTimeout: 2\n";
    for name in ["stuck", "stuck2"] {
        store.archive_with_config(name, &model, "base_handler", &[], Some(yaml));
    }
    let server = Server::start(
        store.path(),
        &["stuck.mar", "stuck2.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    for name in ["stuck", "stuck2"] {
        let started = Instant::now();
        let (status, body) = json(
            client()
                .post(server.url(&format!("/predictions/{name}")))
                .json(&json!([1.0]))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, d) = call(reqwest::Method::GET, server.mgmt("/models/stuck"));
    assert_eq!(d[0]["workers"][0]["status"], "UNRESPONSIVE", "{d}");
    assert_eq!(call(reqwest::Method::GET, server.url("/ping")).0, 500);
    // A new request is not queued behind it.
    let started = Instant::now();
    let (status, _) = json(
        client()
            .post(server.url("/predictions/stuck"))
            .json(&json!([1.0]))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let (status, body) = call(reqwest::Method::DELETE, server.mgmt("/models/stuck"));
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    println!("DELETE of a model with a stuck forward took {took:?}");
    assert!(took < Duration::from_secs(20), "DELETE took {took:?}");

    // SIGTERM with the other one still stuck: the process exits.
    let started = Instant::now();
    let exit = server.stop();
    println!("stop with a stuck forward took {:?}", started.elapsed());
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_fifo_named_as_an_archive_is_refused_without_reading_it() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let fifo = store.path().join("fifo.mar");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // At startup: the server comes up and serves the rest.
    let server = Server::start(
        store.path(),
        &["fifo.mar", "h.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    assert_eq!(model_names(&server), ["h"]);
    assert!(server.log().contains("FIFO"), "{}", server.log());
    for url in ["fifo.mar".to_string(), format!("file://{}", fifo.display())] {
        let started = Instant::now();
        let (status, body) = post(server.mgmt(&format!("/models?url={url}")));
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("FIFO"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let started = Instant::now();
    assert!(server.stop().success());
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------------
// 6. Races in the registry: a change is applied whole or refused.

#[test]
fn concurrent_registrations_and_predictions_are_whole_or_refused() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(
        store.path(),
        &[],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changers: Vec<_> = (0..20)
        .map(|i| {
            let (mgmt, stop) = (server.mgmt(""), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for _ in 0..8 {
                    let (status, body) = if i % 2 == 0 {
                        post(format!("{mgmt}/models?url=h.mar&model_name=racer"))
                    } else {
                        call(reqwest::Method::DELETE, format!("{mgmt}/models/racer"))
                    };
                    seen.push((status, body));
                }
                stop.load(std::sync::atomic::Ordering::Relaxed);
                seen
            })
        })
        .collect();
    let predictors: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (server.url("/predictions/racer"), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = client()
                        .post(&url)
                        .header("content-type", "text/plain")
                        .body("ok")
                        .send()
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    seen.push((status, started.elapsed()));
                }
                seen
            })
        })
        .collect();
    let mut changes = Vec::new();
    for c in changers {
        changes.extend(c.join().unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (status, body) in &changes {
        assert!(
            [200, 404, 409].contains(status),
            "a registration or unregistration answered {status}: {body}"
        );
    }
    let mut predictions = Vec::new();
    for p in predictors {
        predictions.extend(p.join().unwrap());
    }
    println!(
        "{} changes, {} predictions",
        changes.len(),
        predictions.len()
    );
    for (status, took) in &predictions {
        assert!(
            [200, 404, 503].contains(status),
            "a prediction answered {status}"
        );
        assert!(
            *took < Duration::from_secs(30),
            "a prediction took {took:?}"
        );
    }
    assert_eq!(call(reqwest::Method::GET, server.url("/ping")).0, 200);
}

// ---------------------------------------------------------------------------------------
// 7. A refused registration changes nothing.

#[test]
fn a_refused_duplicate_registration_keeps_the_live_models_metrics() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let mut server = Server::start(
        store.path(),
        &["h.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    assert_eq!(hostile_command(&server, "h", "ok").0, 200);
    let metrics = |server: &mut Server| {
        let url = server.metrics_url("/metrics");
        let text = client().get(url).send().unwrap().text().unwrap();
        text.lines()
            .filter(|l| {
                (l.starts_with("wasmserve_workers{")
                    || l.starts_with("ts_inference_requests_total{"))
                    && l.contains("model_name=\"h\"")
            })
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let before = metrics(&mut server);
    assert_eq!(before.len(), 2, "{before:?}");
    let (status, _) = post(server.mgmt("/models?url=h.mar"));
    assert_eq!(status, 409);
    assert_eq!(metrics(&mut server), before);
    assert_eq!(hostile_command(&server, "h", "ok").0, 200);
}

// ---------------------------------------------------------------------------------------
// 8. Smaller leaks.

fn affine_store() -> ModelStore {
    let store = ModelStore::new();
    let example = tch::Tensor::zeros([1, 2], (tch::Kind::Float, tch::Device::Cpu));
    let model = traced_model(store.path(), "affine.pt", &[example], |xs| {
        vec![&xs[0] * 2.0 + 1.0]
    });
    store.archive("affine", &model, "base_handler", &[]);
    scripted_base(
        &store,
        "divide",
        "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    return torch.div(x, 0.0)",
    );
    scripted_base(
        &store,
        "square",
        "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    return torch.mm(x, x)",
    );
    store
}

/// A scripted model whose forward is `forward` behind `base_handler`, archived in
/// `store` as `NAME.mar`.
fn scripted_base(store: &ModelStore, name: &str, forward: &str) {
    let model = scripted_model(store.path(), &format!("{name}.pt"), forward);
    store.archive(name, &model, "base_handler", &[]);
}

fn post_json(server: &Server, model: &str, body: serde_json::Value) -> (u16, String) {
    let resp = client()
        .post(server.url(&format!("/predictions/{model}")))
        .json(&body)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn libtorch_errors_reach_the_client_as_one_line() {
    let store = affine_store();
    let server = Server::start(store.path(), &["affine.mar", "square.mar"], "");
    for (model, body) in [
        (
            "affine",
            json!({"shape": [0, 18446744073709551615u64], "data": []}),
        ),
        ("square", json!([[1.0, 2.0, 3.0]])),
        ("square", json!([1.0, 2.0])),
    ] {
        let (status, text) = post_json(&server, model, body.clone());
        println!("{body}: {status} {text}");
        assert!((400..600).contains(&status), "{body}: {status}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.len() < 400,
            "{body}: {} bytes: {message}",
            message.len()
        );
        for leak in ["Exception raised from", "0x", ".so", "frame #"] {
            assert!(!message.contains(leak), "{body}: {leak:?} in {message}");
        }
    }
}

#[test]
fn a_wrong_number_of_inputs_is_the_clients_error() {
    let store = affine_store();
    let server = Server::start(store.path(), &["affine.mar"], "");
    let (status, text) = post_json(
        &server,
        "affine",
        json!({"inputs": [[1.0, 2.0], [3.0, 4.0]]}),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("takes 1 input"), "{text}");
}

#[test]
fn non_finite_outputs_are_written_as_torchserve_writes_them() {
    let store = affine_store();
    let server = Server::start(store.path(), &["divide.mar"], "");
    let (status, text) = post_json(&server, "divide", json!([1.0, -1.0, 0.0, 2.0]));
    assert_eq!(status, 200, "{text}");
    // Python's json.dumps of float('inf'), float('-inf'), float('nan').
    let compact: String = text.split_whitespace().collect();
    assert_eq!(compact, "[Infinity,-Infinity,NaN,Infinity]");
}

#[test]
fn form_fields_and_parts_are_capped_before_they_cost_memory() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(store.path(), &["h.mar"], "");
    let before = vm_rss_mib(server.pid());
    // 3 million empty keys in 6 MB, 8 at once.
    let body = "&".repeat(3_000_000);
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (server.url("/predictions/h"), body.clone());
            std::thread::spawn(move || {
                json(
                    client()
                        .post(url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .unwrap(),
                )
            })
        })
        .collect();
    for s in senders {
        let (status, body) = s.join().unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("fields"),
            "{body}"
        );
    }
    let after = vm_rss_mib(server.pid());
    println!("RSS {before:.0} MiB before, {after:.0} MiB after 8 bodies of 3 million keys");
    assert!(
        after - before < 200.0,
        "RSS grew from {before:.0} to {after:.0} MiB"
    );

    // A multipart form of 1,000 parts.
    let mut form = reqwest::blocking::multipart::Form::new();
    for i in 0..1000 {
        form = form.text(format!("f{i}"), "x");
    }
    let (status, body) = json(
        client()
            .post(server.url("/predictions/h"))
            .multipart(form)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400, "{body}");
    // A form within the limit still works.
    let (status, _) = json(
        client()
            .post(server.url("/predictions/h"))
            .form(&[("data", "ok")])
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
}

#[test]
fn model_names_are_bounded() {
    let store = ModelStore::new();
    store.hostile("h", "minWorkers: 1\nmaxWorkers: 1\n");
    let server = Server::start(store.path(), &[], "enable_model_api=true");
    let long = "m".repeat(10_000);
    let (status, body) = post(server.mgmt(&format!("/models?url=h.mar&model_name={long}")));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().len() < 1000, "{body}");
    let ok = "m".repeat(128);
    let (status, body) = post(server.mgmt(&format!("/models?url=h.mar&model_name={ok}")));
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------
// 9. Models the server cannot run as it runs them.

#[test]
fn a_forward_that_takes_numbers_is_served_and_one_that_takes_strings_is_refused() {
    let store = ModelStore::new();
    scripted_base(
        &store,
        "scale",
        "  def forward(self: __torch__.Model, x: Tensor, k: int, bias: float=0.5) -> Tensor:\n    return torch.add(torch.mul(x, k), bias)",
    );
    scripted_base(
        &store,
        "names",
        "  def forward(self: __torch__.Model, x: Tensor, label: str) -> Tensor:\n    return x",
    );
    let server = Server::start(
        store.path(),
        &["scale.mar", "names.mar"],
        "enable_model_api=true",
    );
    assert_eq!(model_names(&server), ["scale"]);
    assert!(server.log().contains("label: str"), "{}", server.log());
    let (status, text) = post_json(&server, "scale", json!({"inputs": [[1.0, 2.0], [3]]}));
    assert_eq!((status, text.as_str()), (200, "[3.5,6.5]"));
    let (status, text) = post_json(
        &server,
        "scale",
        json!({"inputs": [[1.0, 2.0], [3], [0.0]]}),
    );
    assert_eq!((status, text.as_str()), (200, "[3.0,6.0]"));
    let (status, text) = post_json(&server, "scale", json!({"inputs": [[1.0, 2.0]]}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("takes 2 to 3 input(s)"), "{text}");
    let (status, text) = post_json(&server, "scale", json!({"inputs": [[1.0], [3, 4]]}));
    assert_eq!(status, 400, "{text}");
    let (status, body) = post(server.mgmt("/models?url=names.mar"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("label: str"),
        "{body}"
    );
}

/// A module that keeps the last input's sum in an attribute and answers with it after
/// a while: shared by two workers, concurrent calls see each other's state.
fn stateful_model(dir: &std::path::Path) -> std::path::PathBuf {
    let code = [
        "class Model(Module):",
        "  __parameters__ = []",
        "  __buffers__ = []",
        "  training : bool",
        "  last : float",
        "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:",
        "    self.last = float(torch.sum(x))",
        "    y = x",
        "    for i in range(3000):",
        "      y = torch.add(y, 1.0)",
        "    return torch.full([1, 1], self.last)",
        "",
    ]
    .join("\n");
    // The module object with its state {"training": False, "last": 0.0} (pickle 2).
    let mut pkl = b"\x80\x02c__torch__\nModel\nq\x00)\x81}(X\x08\x00\x00\x00trainingq\x01\x89X\x04\x00\x00\x00lastq\x02G".to_vec();
    pkl.extend_from_slice(&0f64.to_be_bytes());
    pkl.extend_from_slice(b"ubq\x03.");
    torchscript_file(dir, "stateful.pt", &code, &pkl)
}

/// Sends 200 requests from 8 threads, each a distinct value; how many came back with
/// another request's answer.
fn crossed_answers(server: &Server, model: &str) -> usize {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let url = server.url(&format!("/predictions/{model}"));
            std::thread::spawn(move || {
                (0..25)
                    .filter(|i| {
                        let v = (t * 100 + i) as f64;
                        let (status, body) =
                            json(client().post(&url).json(&json!([v])).send().unwrap());
                        assert_eq!(status, 200, "{body}");
                        body != json!([v])
                    })
                    .count()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

#[test]
fn a_stateful_module_gets_a_copy_per_worker() {
    let store = ModelStore::new();
    let dir = tempfile::tempdir().unwrap();
    let model = stateful_model(dir.path());
    store.archive_with_config(
        "own",
        &model,
        "base_handler",
        &[],
        Some("minWorkers: 2\nmaxWorkers: 2\nmodulePerWorker: true\n"),
    );
    store.archive_with_config(
        "shared",
        &model,
        "base_handler",
        &[],
        Some("minWorkers: 2\nmaxWorkers: 2\n"),
    );
    let server = Server::start(store.path(), &["own.mar", "shared.mar"], "");
    let shared = crossed_answers(&server, "shared");
    let own = crossed_answers(&server, "own");
    println!("crossed answers of 200: {shared} with one shared module, {own} with one per worker");
    assert_eq!(own, 0, "with modulePerWorker a request saw another's state");
}
