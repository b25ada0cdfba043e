//! Attacks on the server, end to end: a hostile handler (tests/guests/faulty) that tries
//! to leave its sandbox and misbehaves in every way a handler can, served beside a good
//! model; hostile archives; bad and slow clients. Each must cost at most its own
//! request: the next request to the same model works, the good model answers, /ping
//! stays healthy.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The faulty handler on a tiny model (doubles a [1, 1] tensor), one worker, a 2 s time
/// bound and 64 MiB of memory; mobilenet beside it.
fn hostile_server(extra_config: &str, env: &[(&str, &str)]) -> (ModelStore, Server) {
    let store = ModelStore::new();
    let model = traced_model(
        store.path(),
        "double.pt",
        &[tch::Tensor::ones(
            [1, 1],
            (tch::Kind::Float, tch::Device::Cpu),
        )],
        |x| vec![&x[0] * 2],
    );
    store.archive_with_config(
        "faulty",
        &model,
        guest("faulty_handler").to_str().unwrap(),
        &[],
        Some("responseTimeout: 2\nhandlerMemoryLimitMb: 64\nminWorkers: 1\nmaxWorkers: 1\n"),
    );
    store.mobilenet();
    let server = Server::start_with_env(
        store.path(),
        &["faulty.mar", "mobilenet.mar"],
        &format!("max_response_size=1000000\n{extra_config}"),
        env,
    );
    (store, server)
}

fn ask(server: &Server, command: &str) -> (u16, serde_json::Value) {
    json(
        client()
            .post(server.url("/predictions/faulty"))
            .header("content-type", "text/plain")
            .body(command.to_string())
            .send()
            .unwrap(),
    )
}

/// After a fault: the same model answers again, the good model answers, /ping is healthy.
fn still_fine(server: &Server, after: &str) {
    let (status, body) = ask(server, "ok");
    assert_eq!(status, 200, "after {after}: {body}");
    let (status, body) = json(server.post(
        "/predictions/mobilenet",
        std::fs::read(asset("images/kitten.jpg")).unwrap(),
    ));
    assert_eq!(status, 200, "after {after}: {body}");
    let (status, body) = json(client().get(server.url("/ping")).send().unwrap());
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "Healthy"})),
        "after {after}"
    );
}

#[test]
fn the_sandbox_holds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_store, server) = hostile_server("", &[("WASMSERVE_TEST_SECRET", "hunter2")]);
    for probe in [
        "passwd",
        "ls-root",
        "write-model",
        &format!("socket {port}"),
        "env",
    ] {
        let (status, body) = ask(&server, probe);
        assert_eq!(status, 200, "{probe}: {body}");
        assert_eq!(body["ok"], false, "{probe} got through the sandbox: {body}");
        assert!(!body.to_string().contains("hunter2"), "{body}");
    }
    // Its own archive is readable.
    let (_, body) = ask(&server, "ls-model");
    assert_eq!(body["ok"], true, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("double.pt"),
        "{body}"
    );
    // The clocks tick in whole milliseconds.
    let (_, body) = ask(&server, "clock");
    let detail = body["detail"].as_str().unwrap();
    let (step, sub_ms) = detail.split_once(' ').unwrap();
    let step: u128 = step.parse().unwrap();
    assert!(
        step >= 1_000_000,
        "the monotonic clock's finest step is {step} ns"
    );
    assert_eq!(sub_ms, "0", "the wall clock has a sub-millisecond part");
    // Nothing was planted in the model folder and nobody connected.
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the guest connected to the host"
    );
    still_fine(&server, "the probes");
}

#[test]
fn every_fault_costs_its_own_request_only() {
    let (_store, server) = hostile_server("", &[]);
    let cases: [(&str, &str); 6] = [
        ("trap", "the handler failed"),
        ("panic", "the handler failed"),
        ("membomb", "ran out of memory: its limit is 64 MiB"),
        ("badtensor", "needs 16 bytes, the handler gave 3"),
        (
            "bigoutput 2000000",
            "exceeds max_response_size (1000000 bytes)",
        ),
        ("loop", "ran past its time limit"),
    ];
    for (command, expected) in cases {
        let started = Instant::now();
        let (status, body) = ask(&server, command);
        assert!((500..600).contains(&status), "{command}: {status} {body}");
        assert_eq!(body["code"], status, "{body}");
        assert_eq!(body["type"], "InternalServerException", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{command}: {message}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{command} took {:?}",
            started.elapsed()
        );
        still_fine(&server, command);
    }
    // A handler that would sleep past its deadline fails at once.
    let started = Instant::now();
    let (status, body) = ask(&server, "sleep");
    assert!((500..600).contains(&status), "sleep: {status} {body}");
    assert!(
        body["message"].as_str().unwrap().contains("tried to sleep"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a sleeping handler held its request for {:?}",
        started.elapsed()
    );
    still_fine(&server, "sleep");
}

#[test]
fn a_handler_cannot_flood_the_logs_or_the_metrics() {
    let (_store, mut server) = hostile_server("", &[]);
    let (status, body) = ask(&server, "stdout 20000");
    assert_eq!(status, 200, "{body}");
    let (status, body) = ask(&server, "logflood 20000");
    assert_eq!(status, 200, "{body}");
    let (status, _) = ask(&server, "metricflood 5000");
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log();
    let lines = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    // Each call may write 100 lines, stdout and stderr together; the rest is dropped.
    assert!(
        (1..=100).contains(&lines("faulty stdout line")),
        "{}",
        lines("faulty stdout line")
    );
    assert!(lines("faulty stdout line") + lines("faulty stderr line") <= 100);
    assert_eq!(lines("faulty log line"), 100, "100 log lines per call");
    assert!(log.contains("dropped"), "the drop is reported");
    // The lines carry the model and the request.
    let line = log
        .lines()
        .find(|l| l.contains("faulty log line 0"))
        .unwrap();
    assert!(
        line.contains("model_name=faulty") && line.contains("request_id="),
        "{line}"
    );
    let text = client()
        .get(server.metrics_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let series = text
        .lines()
        .filter(|l| l.starts_with("faulty_flood_"))
        .count();
    assert_eq!(series, 100, "100 metric values per call");
    assert!(
        !text.contains("someone_else"),
        "a handler cannot pose as another model"
    );
    let dropped =
        wasmserve::metrics::sample(&text, "wasmserve_handler_dropped_total", "kind=\"metric\"");
    assert_eq!(dropped, Some(4900.0));
    let dropped_lines =
        wasmserve::metrics::sample(&text, "wasmserve_handler_dropped_total", "kind=\"log\"");
    // 40,000 stdout + stderr lines and 20,000 log lines, 100 of each call kept.
    assert_eq!(dropped_lines, Some(59_800.0));
    still_fine(&server, "the floods");
}

/// Writes `bytes` to a new connection and returns it.
fn raw(server: &Server, bytes: &[u8]) -> TcpStream {
    let addr = server.url("").trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s
}

#[test]
fn slow_and_malformed_clients_cost_nothing_else() {
    let (_store, server) = hostile_server("client_timeout=2", &[]);
    // 100 connections stuck in their headers, 20 stuck in their bodies.
    let mut stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            raw(
                &server,
                b"POST /predictions/faulty HTTP/1.1\r\nHost: x\r\nContent-Le",
            )
        })
        .collect();
    stalled.extend((0..20).map(|_| {
        raw(
            &server,
            b"POST /predictions/faulty HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
        )
    }));
    let started = Instant::now();
    still_fine(&server, "stalled clients");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The server hangs up on them once client_timeout passes.
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = Vec::new();
        let t = Instant::now();
        let _ = s.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_secs(6),
            "a stalled connection stayed open"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(text.is_empty() || text.contains(" 408 "), "{text}");
    }

    // Malformed multipart bodies are 400s.
    for body in [
        "--b\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\ntrap".to_string(),
        "no boundary here at all".to_string(),
    ] {
        let (status, answer) = json(
            client()
                .post(server.url("/predictions/faulty"))
                .header("content-type", "multipart/form-data; boundary=b")
                .body(body)
                .send()
                .unwrap(),
        );
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["type"], "BadRequestException", "{answer}");
    }
    // A body over max_request_size is a 413.
    let (status, answer) = json(
        client()
            .post(server.url("/predictions/faulty"))
            .body(vec![b'x'; 6_553_501])
            .send()
            .unwrap(),
    );
    assert_eq!(status, 413, "{answer}");
    still_fine(&server, "malformed requests");
}

/// Registers `file` (in the store) through the management API.
fn register(server: &Server, file: &str) -> (u16, serde_json::Value) {
    json(
        client()
            .post(server.mgmt(&format!("/models?url={file}&model_name=hostile")))
            .send()
            .unwrap(),
    )
}

fn zip_of(path: &std::path::Path, entries: &[(&str, &[u8])], links: &[(&str, &str)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in entries {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    for (name, target) in links {
        zip.add_symlink(*name, *target, opts).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing_behind() {
    let store = ModelStore::new();
    store.mobilenet();
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().to_str().unwrap().to_string();
    let server = Server::start_with_env(
        store.path(),
        &["mobilenet.mar"],
        "enable_model_api=true\nmax_archive_inflated_size=536870912\nmax_archive_entries=5000",
        &[("TMPDIR", &tmp)],
    );
    let manifest = |serialized: &str, handler: &str| {
        format!(
            r#"{{"runtime": "wasm", "model": {{"modelName": "hostile", "modelVersion": "1.0", "serializedFile": "{serialized}", "handler": "{handler}"}}}}"#
        )
    };
    let good_manifest = manifest("m.pt", "base_handler");
    let dir = store.path();
    let model = std::fs::read(asset("models/mobilenet_v2_quantized.pt")).unwrap();
    let m = "MAR-INF/MANIFEST.json";
    let mut cases: Vec<(&str, &str)> = Vec::new();
    std::fs::write(dir.join("notzip.mar"), b"PK but not really a zip").unwrap();
    cases.push(("notzip.mar", "not a model archive"));
    zip_of(
        &dir.join("slip.mar"),
        &[
            (m, good_manifest.as_bytes()),
            ("m.pt", &model),
            ("../escaped.txt", b"x"),
        ],
        &[],
    );
    cases.push(("slip.mar", "escaped.txt"));
    zip_of(
        &dir.join("absolute.mar"),
        &[
            (m, good_manifest.as_bytes()),
            ("m.pt", &model),
            ("/tmp/absolute.txt", b"x"),
        ],
        &[],
    );
    cases.push(("absolute.mar", "absolute.txt"));
    zip_of(
        &dir.join("link.mar"),
        &[(m, good_manifest.as_bytes()), ("m.pt", &model)],
        &[("passwd", "/etc/passwd")],
    );
    cases.push(("link.mar", "link"));
    zip_of(&dir.join("nomanifest.mar"), &[("m.pt", &model)], &[]);
    cases.push(("nomanifest.mar", "MANIFEST.json"));
    zip_of(
        &dir.join("badjson.mar"),
        &[(m, b"{\"runtime\": "), ("m.pt", &model)],
        &[],
    );
    cases.push(("badjson.mar", "MANIFEST.json"));
    let missing = manifest("absent.pt", "base_handler");
    zip_of(&dir.join("missing.mar"), &[(m, missing.as_bytes())], &[]);
    cases.push(("missing.mar", "absent.pt"));
    let nohandler = manifest("m.pt", "handler.wasm");
    zip_of(
        &dir.join("nohandler.mar"),
        &[(m, nohandler.as_bytes()), ("m.pt", &model)],
        &[],
    );
    cases.push(("nohandler.mar", "handler.wasm"));
    zip_of(
        &dir.join("notts.mar"),
        &[(m, good_manifest.as_bytes()), ("m.pt", b"not torchscript")],
        &[],
    );
    cases.push(("notts.mar", "TorchScript"));
    let core = manifest("m.pt", "h.wasm");
    zip_of(
        &dir.join("core.mar"),
        &[
            (m, core.as_bytes()),
            ("m.pt", &model),
            ("h.wasm", b"\0asm\x01\0\0\0"),
        ],
        &[],
    );
    cases.push(("core.mar", "core WebAssembly module"));
    let yaml_manifest = r#"{"runtime": "wasm", "model": {"modelName": "hostile", "modelVersion": "1.0", "serializedFile": "m.pt", "handler": "base_handler", "configFile": "c.yaml"}}"#;
    zip_of(
        &dir.join("yaml.mar"),
        &[
            (m, yaml_manifest.as_bytes()),
            ("m.pt", &model),
            ("c.yaml", b"batchSize: many\n"),
        ],
        &[],
    );
    cases.push(("yaml.mar", "batchSize"));
    // A bomb: 600 MiB of zeros in under a MiB, over the 512 MiB limit set above.
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("bomb.mar")).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zip.start_file(m, opts).unwrap();
        zip.write_all(good_manifest.as_bytes()).unwrap();
        zip.start_file("m.pt", opts).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..600 {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap();
    }
    cases.push(("bomb.mar", "inflates past"));
    // 100,000 entries, over the 5,000 set above.
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("many.mar")).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file(m, opts).unwrap();
        zip.write_all(good_manifest.as_bytes()).unwrap();
        for i in 0..100_000 {
            zip.start_file(format!("f{i}"), opts).unwrap();
        }
        zip.finish().unwrap();
    }
    cases.push(("many.mar", "entries"));

    for (file, expected) in &cases {
        let (status, body) = register(&server, file);
        assert!((400..600).contains(&status), "{file}: {status} {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{file}: the message should mention {expected:?}: {message}"
        );
    }
    // Nothing was registered, nothing escaped, nothing is left extracted.
    let (_, list) = json(client().get(server.mgmt("/models")).send().unwrap());
    assert_eq!(list["models"].as_array().unwrap().len(), 1, "{list}");
    assert!(!dir.parent().unwrap().join("escaped.txt").exists());
    assert!(!std::path::Path::new("/tmp/absolute.txt").exists());
    let work_dirs: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wasmserve-"))
        .collect();
    assert_eq!(work_dirs.len(), 1, "one server work folder");
    let extracted: Vec<String> = std::fs::read_dir(work_dirs[0].path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        extracted.len(),
        1,
        "only mobilenet stays extracted: {extracted:?}"
    );
    let (status, _) = json(server.post(
        "/predictions/mobilenet",
        std::fs::read(asset("images/kitten.jpg")).unwrap(),
    ));
    assert_eq!(status, 200);
}
