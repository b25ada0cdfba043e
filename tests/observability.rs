//! The metrics API, handler metrics and the log files, end to end: a known sequence of
//! requests, then the exposition, promtool's verdict and the access log are checked
//! against it.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Sum of the samples of `name` whose labels contain `filter`.
fn sample(text: &str, name: &str, filter: &str) -> Option<f64> {
    wasmserve::metrics::sample(text, name, filter)
}

fn scrape(server: &mut Server, query: &str) -> String {
    let url = server.metrics_url(&format!("/metrics{query}"));
    let resp = client().get(url).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    resp.text().unwrap()
}

/// promtool's lint advisories that TorchServe's own names cause, and nothing else.
const TORCHSERVE_NAMING_ADVISORIES: &[&str] = &[
    "counter metrics should have \"_total\" suffix",
    "use base unit \"seconds\" instead of \"microseconds\"",
    "should be written in 'snake_case' not 'camelCase'",
];

/// The families whose names and label names are TorchServe's (CamelCase, counters
/// without `_total`, microseconds).
const TORCHSERVE_NAMES: &[&str] = &[
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
    "Requests2XX",
    "Requests4XX",
    "Requests5XX",
    "QueueTime",
    "WorkerThreadTime",
    "HandlerTime",
    "PredictionTime",
    "CPUUtilization",
    "MemoryUsed",
    "MemoryAvailable",
    "MemoryUtilization",
];

/// Runs `promtool check metrics`: the exposition must parse, and the only lint notes
/// allowed are those TorchServe's names cause (see `host/src/metrics.rs`).
fn promtool_accepts(text: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; `make deps` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(3),
        "promtool could not parse the exposition ({code:?}): {report}\n{text}"
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            TORCHSERVE_NAMES.contains(&name)
                && TORCHSERVE_NAMING_ADVISORIES
                    .iter()
                    .any(|a| line.contains(a)),
            "promtool objects to more than TorchServe's names: {line}\n{report}\n{text}"
        );
    }
}

/// The lines of the access log files under `dir`, once they hold `want` lines that
/// contain `needle` (the file writer is asynchronous).
fn access_log(dir: &std::path::Path, needle: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("access_log") && name.ends_with(".log") {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                lines.extend(text.lines().map(String::from));
            }
        }
        if lines.iter().filter(|l| l.contains(needle)).count() >= want || Instant::now() > deadline
        {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_and_access_log_follow_a_known_sequence() {
    let store = ModelStore::new();
    store.mobilenet();
    let mut server = Server::start(
        store.path(),
        &["mobilenet.mar"],
        "default_workers_per_model=2",
    );
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let http = client();
    let mut sent = Vec::new(); // (request id, path, status)
    // The client's wall time of the model's requests: the server's latency of them
    // cannot be longer.
    let mut client_us = 0.0;
    let mut post = |path: &str, body: Vec<u8>, want: u16| {
        let id = format!("test-{}-{}", sent.len(), std::process::id());
        let started = Instant::now();
        let resp = http
            .post(server.url(path))
            .header("x-request-id", &id)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        assert_eq!(resp.headers()["x-request-id"].to_str().unwrap(), id);
        if path.starts_with("/predictions/mobilenet") {
            client_us += started.elapsed().as_secs_f64() * 1e6;
        }
        sent.push((id, path.to_string(), want));
    };
    for _ in 0..3 {
        post("/predictions/mobilenet", kitten.clone(), 200);
    }
    for _ in 0..2 {
        post("/predictions/mobilenet", b"not an image".to_vec(), 400);
    }
    post("/predictions/nosuchmodel", kitten.clone(), 404);
    assert_eq!(
        http.get(server.mgmt("/models")).send().unwrap().status(),
        200
    );

    let text = scrape(&mut server, "");
    let model = "model_name=\"mobilenet\",model_version=\"1.0\"";
    assert_eq!(
        sample(&text, "ts_inference_requests_total", model),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "Requests2XX", "Level=\"Host\""),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "Requests4XX", "Level=\"Host\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "Requests5XX", "").unwrap_or(0.0),
        0.0,
        "{text}"
    );
    let latency = sample(&text, "ts_inference_latency_microseconds", model).unwrap();
    let queue = sample(&text, "ts_queue_latency_microseconds", model).unwrap();
    // Five requests: measured (more than nothing), within what the client waited for
    // them (not a fixed time, which would depend on the CPU); queueing is part of it.
    assert!(
        latency > 0.0 && latency <= client_us && queue >= 0.0 && queue < latency,
        "latency {latency} µs, queue {queue} µs, the client waited {client_us} µs:\n{text}"
    );
    let model_level = "ModelName=\"mobilenet\"";
    assert!(
        sample(&text, "HandlerTime", model_level).unwrap() > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, "PredictionTime", model_level).unwrap() > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "wasmserve_workers", model),
        Some(2.0),
        "{text}"
    );
    assert!(sample(&text, "MemoryUsed", "Level=\"Host\"").unwrap() > 0.0);
    assert!(sample(&text, "process_resident_memory_bytes", "").unwrap() > 50e6);
    assert!(!text.contains(",}"), "no trailing commas in label sets");
    promtool_accepts(&text);

    // TorchServe's filter.
    let only = scrape(
        &mut server,
        "?name[]=ts_inference_latency_microseconds&name[]=Requests4XX",
    );
    assert!(
        only.contains("# TYPE ts_inference_latency_microseconds counter"),
        "{only}"
    );
    assert!(only.contains("Requests4XX{"), "{only}");
    assert!(
        !only.contains("Requests2XX") && !only.contains("HandlerTime"),
        "{only}"
    );
    promtool_accepts(&only);

    // One access log line per request, with its id, path and status.
    let lines = access_log(&store.path().join("logs"), "test-", sent.len());
    for (id, path, status) in &sent {
        let matching: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains(&format!("request_id={id} ")))
            .collect();
        assert_eq!(matching.len(), 1, "{id}: {lines:#?}");
        let line = matching[0];
        assert!(
            line.contains(&format!("\"POST {path} HTTP/1.1\" {status} ")),
            "{line}"
        );
        assert!(line.contains("127.0.0.1:"), "the client's address: {line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /models HTTP/1.1\" 200") && l.contains("api=management")),
        "{lines:#?}"
    );
    // The server log and the model log exist beside it.
    let names: Vec<String> = std::fs::read_dir(store.path().join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("ts_log")), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("model_log")),
        "{names:?}"
    );
}

#[test]
fn handler_metrics_carry_the_hosts_labels() {
    let store = ModelStore::new();
    store.archive(
        "mnist",
        &asset("models/vit4mnist.ptl"),
        guest("mnist_handler").to_str().unwrap(),
        &[],
    );
    let mut server = Server::start(store.path(), &["mnist.mar"], "");
    let png = std::fs::read(asset("images/mnist/7.png")).unwrap();
    let (status, body) = json(server.post("/predictions/mnist", png));
    assert_eq!((status, body), (200, serde_json::json!(7)));
    let text = scrape(&mut server, "?name[]=digit_score");
    let line = text
        .lines()
        .find(|l| l.starts_with("digit_score{"))
        .unwrap_or_else(|| panic!("no digit_score: {text}"));
    assert!(
        line.starts_with("digit_score{digit=\"7\",model_name=\"mnist\",model_version=\"1.0\"} "),
        "{line}"
    );
    assert!(
        text.contains("# HELP digit_score Handler metric with unit: logit"),
        "{text}"
    );
    promtool_accepts(&text);
}

#[test]
fn metrics_can_be_turned_off() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(store.path(), &["mobilenet.mar"], "enable_metrics_api=false");
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    assert_eq!(server.post("/predictions/mobilenet", kitten).status(), 200);
    // No listener was announced; the default port is not taken by this server either.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!server.stdout_has("metrics API on"));
}
