//! The management API, end to end and in TorchServe's words: register, scale, describe,
//! infer, set-default and unregister with two versions; pagination; every documented
//! error status.

mod common;

use common::*;
use reqwest::blocking::Response;
use serde_json::json;

/// Archives vit4mnist with the example handler as `file` in `store`, version `version`.
fn mnist_archive(store: &ModelStore, file: &str, version: &str) {
    let handler = guest("mnist_handler");
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "mnist",
        "-v",
        version,
        "--serialized-file",
        asset("models/vit4mnist.ptl").to_str().unwrap(),
        "--handler",
        handler.to_str().unwrap(),
        "--export-path",
        store.path().to_str().unwrap(),
        "-f",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(store.path().join("mnist.mar"), store.path().join(file)).unwrap();
}

fn call(method: reqwest::Method, url: String) -> (u16, serde_json::Value) {
    json(client().request(method, url).send().unwrap())
}

fn digit(server: &Server, path: &str, d: u32) -> Response {
    server.post(
        path,
        std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap(),
    )
}

#[test]
fn registration_is_off_unless_enabled() {
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    let server = Server::start(store.path(), &[], "");
    let (status, body) = call(
        reqwest::Method::POST,
        server.mgmt("/models?url=mnist_v1.mar"),
    );
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["type"], "MethodNotAllowedException");
    let (status, body) = call(reqwest::Method::GET, server.mgmt("/models"));
    assert_eq!((status, body), (200, json!({"models": []})));
}

#[test]
fn the_whole_lifecycle_with_two_versions() {
    use reqwest::Method;
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    mnist_archive(&store, "mnist_v2.mar", "2.0");
    let server = Server::start(
        store.path(),
        &[],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );

    // Register both versions, one synchronously, one not.
    let (status, body) = call(
        Method::POST,
        server.mgmt("/models?url=mnist_v1.mar&initial_workers=1&synchronous=true"),
    );
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"status": "Model \"mnist\" Version: 1.0 registered with 1 initial workers"})
        )
    );
    let (status, body) = json(
        client()
            .post(server.mgmt("/models"))
            .json(&json!({"url": "mnist_v2.mar", "initial_workers": 1, "synchronous": false, "batch_size": 4, "max_batch_delay": 50}))
            .send()
            .unwrap(),
    );
    // TorchServe answers an asynchronous registration 200 (its Postman data).
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"status": "Model \"mnist\" Version: 2.0 registered; its 1 initial workers are starting"})
        )
    );
    let (status, body) = call(Method::POST, server.mgmt("/models?url=mnist_v1.mar"));
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["message"],
        "Model version 1.0 for model mnist already registered."
    );

    // Describe: the default (first) version, one version, all versions.
    let (status, body) = call(Method::GET, server.mgmt("/models/mnist"));
    assert_eq!(status, 200);
    let d = &body[0];
    assert_eq!(
        (d["modelName"].as_str(), d["modelVersion"].as_str()),
        (Some("mnist"), Some("1.0"))
    );
    assert_eq!(d["modelUrl"], "mnist_v1.mar");
    assert_eq!(d["workers"].as_array().unwrap().len(), 1);
    assert_eq!(d["workers"][0]["status"], "READY");
    assert_eq!(d["loadedAtStartup"], false);
    for key in [
        "runtime",
        "minWorkers",
        "maxWorkers",
        "batchSize",
        "maxBatchDelay",
        "responseTimeout",
        "jobQueueStatus",
    ] {
        assert!(d.get(key).is_some(), "{key} missing: {d}");
    }
    let (_, body) = call(Method::GET, server.mgmt("/models/mnist/2.0"));
    assert_eq!(
        (
            body[0]["batchSize"].as_u64(),
            body[0]["maxBatchDelay"].as_u64()
        ),
        (Some(4), Some(50))
    );
    let (_, body) = call(Method::GET, server.mgmt("/models/mnist/all"));
    assert_eq!(body.as_array().unwrap().len(), 2);

    // Infer on each version and on the default.
    for path in [
        "/predictions/mnist",
        "/predictions/mnist/1.0",
        "/predictions/mnist/2.0",
    ] {
        let mut tries = 0;
        let (status, body) = loop {
            let r = json(digit(&server, path, 7));
            // The asynchronously registered version may still be starting its worker.
            if r.0 != 503 || tries > 50 {
                break r;
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert_eq!((status, body), (200, json!(7)), "{path}");
    }

    // Scale the second version up synchronously, then down asynchronously.
    let (status, body) = call(
        Method::PUT,
        server.mgmt("/models/mnist/2.0?min_worker=3&max_worker=4&synchronous=true"),
    );
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "Workers scaled to 3 for model: mnist, version: 2.0"})
        )
    );
    let (_, body) = call(Method::GET, server.mgmt("/models/mnist/2.0"));
    assert_eq!(body[0]["workers"].as_array().unwrap().len(), 3);
    assert_eq!(
        (
            body[0]["minWorkers"].as_u64(),
            body[0]["maxWorkers"].as_u64()
        ),
        (Some(3), Some(4))
    );
    let (status, _) = call(Method::PUT, server.mgmt("/models/mnist/2.0?min_worker=1"));
    assert_eq!(status, 202);
    let (status, body) = call(
        Method::PUT,
        server.mgmt("/models/mnist?min_worker=3&max_worker=2"),
    );
    assert_eq!(status, 400, "{body}");

    // Set the default, refuse to remove it while another version stays, remove both.
    let (status, body) = call(Method::PUT, server.mgmt("/models/mnist/2.0/set-default"));
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "Default version successfully updated for model \"mnist\" to \"2.0\""})
        )
    );
    let (_, body) = call(Method::GET, server.mgmt("/models/mnist"));
    assert_eq!(body[0]["modelVersion"], "2.0");
    let (status, body) = call(Method::DELETE, server.mgmt("/models/mnist/2.0"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "Cannot remove default version for model mnist"
    );
    let (status, body) = call(Method::DELETE, server.mgmt("/models/mnist/1.0"));
    assert_eq!(
        (status, body),
        (200, json!({"status": "Model \"mnist\" unregistered"}))
    );
    let (status, _) = json(digit(&server, "/predictions/mnist/1.0", 3));
    assert_eq!(status, 404);
    let (status, _) = call(Method::DELETE, server.mgmt("/models/mnist"));
    assert_eq!(status, 200);
    let (status, body) = call(Method::GET, server.mgmt("/models/mnist"));
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("Model not found: mnist"))
    );
    let (status, _) = json(digit(&server, "/predictions/mnist", 3));
    assert_eq!(status, 404);
}

#[test]
fn documented_errors() {
    use reqwest::Method;
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    std::fs::write(store.path().join("broken.mar"), b"not a zip").unwrap();
    let server = Server::start(
        store.path(),
        &["mnist=mnist_v1.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let cases: Vec<(Method, &str, u16, &str)> = vec![
        (Method::GET, "/models/nope", 404, "Model not found: nope"),
        (
            Method::GET,
            "/models/mnist/9.9",
            404,
            "Model version: 9.9 does not exist for model: mnist",
        ),
        (
            Method::PUT,
            "/models/nope?min_worker=1",
            404,
            "Model not found: nope",
        ),
        (
            Method::DELETE,
            "/models/mnist/9.9",
            404,
            "Model version: 9.9 does not exist for model: mnist",
        ),
        (
            Method::PUT,
            "/models/mnist/9.9/set-default",
            404,
            "Model version: 9.9 does not exist for model: mnist",
        ),
        (Method::POST, "/models", 400, "Parameter url is required."),
        (
            Method::POST,
            "/models?url=missing.mar",
            404,
            "Model not found in model store: missing.mar",
        ),
        (
            Method::PUT,
            "/models/mnist?min_worker=x",
            400,
            "Invalid value for parameter min_worker: x",
        ),
        (
            Method::PATCH,
            "/models/mnist",
            405,
            "Requested method is not allowed, please refer to API document.",
        ),
        (
            Method::GET,
            "/nothing/here",
            404,
            "Requested resource is not found, please refer to API document.",
        ),
    ];
    for (method, path, want, message) in cases {
        let (status, body) = call(method.clone(), server.mgmt(path));
        assert_eq!(
            (status, body["message"].as_str()),
            (want, Some(message)),
            "{method} {path}: {body}"
        );
        assert_eq!(body["code"], want);
    }
    // Path tricks and broken archives are refused and leave nothing registered.
    for url in [
        "..%2Fmnist_v1.mar",
        "%2Fetc%2Fpasswd",
        "sub%2Fx.mar",
        "broken.mar",
    ] {
        let (status, body) = call(Method::POST, server.mgmt(&format!("/models?url={url}")));
        assert_eq!(status, 400, "{url}: {body}");
    }
    let (_, body) = call(Method::GET, server.mgmt("/models"));
    assert_eq!(
        body,
        json!({"models": [{"modelName": "mnist", "modelUrl": "mnist_v1.mar"}]})
    );
}

#[test]
fn pagination_edges() {
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    let names = ["a", "b", "c", "d", "e"];
    let models: Vec<String> = names.iter().map(|n| format!("{n}=mnist_v1.mar")).collect();
    let models: Vec<&str> = models.iter().map(String::as_str).collect();
    let server = Server::start(store.path(), &models, "default_workers_per_model=1");
    let page = |q: &str| call(reqwest::Method::GET, server.mgmt(&format!("/models{q}"))).1;
    let names_of = |v: &serde_json::Value| -> Vec<String> {
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["modelName"].as_str().unwrap().to_string())
            .collect()
    };

    let first = page("?limit=2");
    assert_eq!(
        (names_of(&first), first["nextPageToken"].as_str()),
        (vec!["a".into(), "b".into()], Some("2"))
    );
    let second = page("?limit=2&next_page_token=2");
    assert_eq!(
        (names_of(&second), second["nextPageToken"].as_str()),
        (vec!["c".into(), "d".into()], Some("4"))
    );
    let last = page("?limit=2&next_page_token=4");
    assert_eq!(names_of(&last), vec!["e".to_string()]);
    assert!(last.get("nextPageToken").is_none(), "{last}");
    let exact = page("?limit=5");
    assert_eq!(names_of(&exact).len(), 5);
    assert!(
        exact.get("nextPageToken").is_none(),
        "no token on an exact last page: {exact}"
    );
    assert_eq!(
        names_of(&page("?limit=101")).len(),
        5,
        "a limit over 100 means 100"
    );
    let zero = page("?limit=0");
    assert_eq!(names_of(&zero).len(), 0);
    assert_eq!(names_of(&page("?next_page_token=9")).len(), 0);
    assert_eq!(page("")["models"][0]["modelUrl"], "mnist_v1.mar");
}

#[test]
fn both_apis_describe_themselves_in_openapi_3() {
    let store = ModelStore::new();
    let server = Server::start(store.path(), &[], "");
    for (url, paths) in [
        (
            server.url("/"),
            vec![
                "/ping",
                "/predictions/{model_name}",
                "/predictions/{model_name}/{model_version}",
            ],
        ),
        (
            server.mgmt("/"),
            vec![
                "/models",
                "/models/{model_name}",
                "/models/{model_name}/{model_version}/set-default",
            ],
        ),
    ] {
        let (status, doc) = call(reqwest::Method::OPTIONS, url.clone());
        assert_eq!(status, 200);
        assert_eq!(doc["openapi"], "3.0.1", "{url}");
        for p in paths {
            assert!(doc["paths"].get(p).is_some(), "{url} lacks {p}");
        }
    }
}

#[test]
fn settings_precedence_config_then_yaml_then_api() {
    use reqwest::Method;
    let store = ModelStore::new();
    let handler = guest("mnist_handler");
    let model = asset("models/vit4mnist.ptl");
    store.archive("plain", &model, handler.to_str().unwrap(), &[]);
    store.archive_with_config(
        "yaml",
        &model,
        handler.to_str().unwrap(),
        &[],
        Some("responseTimeout: 60\nbatchSize: 3\n"),
    );
    std::fs::copy(
        store.path().join("yaml.mar"),
        store.path().join("yaml2.mar"),
    )
    .unwrap();
    let server = Server::start(
        store.path(),
        &["plain.mar", "yaml.mar"],
        "default_response_timeout=30\ndefault_workers_per_model=1\nenable_model_api=true",
    );
    let timeout_of = |m: &str| {
        call(Method::GET, server.mgmt(&format!("/models/{m}"))).1[0]["responseTimeout"].as_u64()
    };
    assert_eq!(timeout_of("plain"), Some(30), "config file");
    assert_eq!(
        timeout_of("yaml"),
        Some(60),
        "the archive's yaml over the config file"
    );
    let (status, body) = call(
        Method::POST,
        server.mgmt("/models?url=yaml2.mar&model_name=api&response_timeout=90"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(timeout_of("api"), Some(90), "the API over the yaml");
    assert_eq!(
        call(Method::GET, server.mgmt("/models/api")).1[0]["batchSize"],
        3
    );
}

#[test]
fn a_full_queue_answers_503() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar"],
        "job_queue_size=1\ndefault_workers_per_model=1",
    );
    let url = server.url("/predictions/mobilenet");
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (url, body) = (url.clone(), kitten.clone());
            std::thread::spawn(move || json(client().post(url).body(body).send().unwrap()))
        })
        .collect();
    let answers: Vec<(u16, serde_json::Value)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let full: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        ok >= 1 && !full.is_empty() && ok + full.len() == 16,
        "{answers:?}"
    );
    assert_eq!(full[0].1["type"], "ServiceUnavailableException");
}

#[test]
fn malformed_config_is_a_startup_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.properties");
    std::fs::write(&cfg, "inference_address=http://127.0.0.1:0\ndefault_workers_per_model=many\nsome_unknown_key=1\n").unwrap();
    let out = wasmserve(&[
        "start",
        "--foreground",
        "--ts-config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config key `default_workers_per_model`") && err.contains("\"many\""),
        "{err}"
    );
}

#[test]
fn scaling_up_and_down_under_load_drops_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    let server = Server::start(
        store.path(),
        &["mnist=mnist_v1.mar"],
        "default_workers_per_model=1",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (url, stop) = (server.url("/predictions/mnist"), stop.clone());
            let png = std::fs::read(asset(&format!("images/mnist/{i}.png"))).unwrap();
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) && ok < 5000 {
                    let (status, body) =
                        json(client().post(&url).body(png.clone()).send().unwrap());
                    if (status, &body) == (200, &json!(i)) {
                        ok += 1;
                    } else {
                        failed.push((status, body));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    for (min, max) in [(4, 4), (1, 1), (3, 4), (1, 2)] {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (status, body) = call(
            reqwest::Method::PUT,
            server.mgmt(&format!(
                "/models/mnist?min_worker={min}&max_worker={max}&synchronous=true"
            )),
        );
        assert_eq!(status, 200, "{body}");
        let (_, d) = call(reqwest::Method::GET, server.mgmt("/models/mnist"));
        assert_eq!(d[0]["workers"].as_array().unwrap().len(), min);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (ok, failed) = c.join().unwrap();
        assert!(
            failed.is_empty(),
            "failed requests while scaling: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 20, "only {total} requests went through");
}

#[test]
fn a_restart_restores_the_served_set_from_the_snapshot() {
    use reqwest::Method;
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    mnist_archive(&store, "mnist_v2.mar", "2.0");
    let server = Server::start(
        store.path(),
        &["mnist=mnist_v1.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let (status, _) = call(
        Method::POST,
        server.mgmt("/models?url=mnist_v2.mar&batch_size=2&max_batch_delay=30"),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        Method::PUT,
        server.mgmt("/models/mnist/2.0?min_worker=2&max_worker=3&synchronous=true"),
    );
    assert_eq!(status, 200);
    let (status, _) = call(Method::PUT, server.mgmt("/models/mnist/2.0/set-default"));
    assert_eq!(status, 200);
    let before = call(Method::GET, server.mgmt("/models/mnist/all")).1;
    assert!(server.stop().success());
    let snapshots = std::fs::read_dir(store.path().join("logs/config"))
        .unwrap()
        .count();
    assert!(snapshots >= 4, "one snapshot per change, got {snapshots}");

    // No --ts-config and no --models: the newest snapshot is the configuration.
    let args = store.restore_args();
    let restored = Server::spawn(&args, &[]);
    let after = call(Method::GET, restored.mgmt("/models/mnist/all")).1;
    let summary = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                json!([
                    d["modelVersion"],
                    d["modelUrl"],
                    d["minWorkers"],
                    d["maxWorkers"],
                    d["batchSize"],
                    d["maxBatchDelay"],
                    d["workers"].as_array().unwrap().len()
                ])
            })
            .collect()
    };
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(
        call(Method::GET, restored.mgmt("/models/mnist")).1[0]["modelVersion"],
        "2.0"
    );
    let (status, body) = json(digit(&restored, "/predictions/mnist", 4));
    assert_eq!((status, body), (200, json!(4)));
    drop(restored);

    // --ncs neither restores nor writes.
    let mut ncs = args.clone();
    ncs.push("--ncs".into());
    let count = std::fs::read_dir(store.path().join("logs/config"))
        .unwrap()
        .count();
    let fresh = Server::spawn(&ncs, &[]);
    assert_eq!(
        call(Method::GET, fresh.mgmt("/models")).1,
        json!({"models": []})
    );
    drop(fresh);
    assert_eq!(
        std::fs::read_dir(store.path().join("logs/config"))
            .unwrap()
            .count(),
        count
    );
}

#[test]
fn server_wide_settings_survive_a_restart_from_the_snapshot() {
    // Every `config.properties` key a snapshot can lose shows here as a model
    // registered after the restart getting other defaults (batch_size and
    // max_batch_delay once did: they were read but never written).
    use reqwest::Method;
    let store = ModelStore::new();
    mnist_archive(&store, "mnist_v1.mar", "1.0");
    let server = Server::start(
        store.path(),
        &["mnist=mnist_v1.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1\nbatch_size=3\nmax_batch_delay=77\n\
         default_response_timeout=42\njob_queue_size=9",
    );
    let (status, _) = call(Method::DELETE, server.mgmt("/models/mnist"));
    assert_eq!(status, 200);
    assert!(server.stop().success());

    let args = store.restore_args();
    let restored = Server::spawn(&args, &[]);
    assert_eq!(
        call(Method::GET, restored.mgmt("/models")).1,
        json!({"models": []}),
        "the newest snapshot is the one after the DELETE"
    );
    let (status, body) = call(Method::POST, restored.mgmt("/models?url=mnist_v1.mar"));
    assert_eq!(status, 200, "{body}");
    let (_, d) = call(Method::GET, restored.mgmt("/models/mnist"));
    assert_eq!(
        json!([
            d[0]["batchSize"],
            d[0]["maxBatchDelay"],
            d[0]["responseTimeout"],
            d[0]["workers"].as_array().unwrap().len()
        ]),
        json!([3, 77, 42, 1]),
        "{d}"
    );
}

/// A one-thread HTTP server on loopback serving `routes` (path → response), for
/// registration by URL. Returns its `http://127.0.0.1:PORT`.
fn file_server(routes: Vec<(&'static str, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() <= 2 {
                    break;
                }
            }
            let mut stream = stream;
            let reply = match routes.iter().find(|(p, _)| *p == path) {
                Some((_, body)) if body.starts_with(b"REDIRECT ") => {
                    let to = String::from_utf8_lossy(&body[9..]).into_owned();
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
                }
                Some((_, body)) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&reply);
        }
    });
    base
}

#[test]
fn registration_by_url_only_from_allowed_urls() {
    use reqwest::Method;
    let src = ModelStore::new();
    mnist_archive(&src, "mnist_v1.mar", "1.0");
    let mar = std::fs::read(src.path().join("mnist_v1.mar")).unwrap();
    let base = file_server(vec![
        ("/m/digits.mar", mar),
        ("/m/broken.mar", b"not a zip at all".to_vec()),
        (
            "/m/away.mar",
            b"REDIRECT http://localhost:1/m/digits.mar".to_vec(),
        ),
        ("/m/moved.mar", b"REDIRECT /m/digits.mar".to_vec()),
    ]);
    let port = base.rsplit(':').next().unwrap();
    let store = ModelStore::new();
    let allowed = format!(
        "allowed_urls=http://127\\.0\\.0\\.1:{port}/m/.*\nenable_model_api=true\ndefault_workers_per_model=1"
    );
    let server = Server::start(store.path(), &[], &allowed);
    let register = |url: &str| call(Method::POST, server.mgmt(&format!("/models?url={url}")));
    let mars = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(store.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".mar"))
            .collect();
        v.sort();
        v
    };

    let (status, body) = register(&format!("{base}/m/digits.mar"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(mars(), ["digits.mar"]);
    let (status, body) = json(digit(&server, "/predictions/mnist", 5));
    assert_eq!((status, body), (200, json!(5)));

    // Not allowed: another port, and a redirect to a host outside allowed_urls.
    let (status, body) = register("http://127.0.0.1:1/m/other.mar");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("allowed_urls"),
        "{body}"
    );
    let (status, body) = register(&format!("{base}/m/away.mar"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("http://localhost:1/m/digits.mar is not allowed"),
        "{body}"
    );
    // A broken archive leaves no file; an allowed redirect is followed.
    let (status, _) = register(&format!("{base}/m/broken.mar"));
    assert_eq!(status, 400);
    assert_eq!(mars(), ["digits.mar"], "a failed registration left a file");
    let (status, body) = call(
        Method::POST,
        server.mgmt(&format!("/models?url={base}/m/moved.mar&model_name=moved")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(mars(), ["digits.mar", "moved.mar"]);
    // The same file twice is a conflict, not an overwrite.
    let (status, _) = register(&format!("{base}/m/digits.mar"));
    assert_eq!(status, 409);
}

#[test]
fn unregistering_answers_the_requests_already_queued() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar"],
        "enable_model_api=true\ndefault_workers_per_model=1",
    );
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (server.url("/predictions/mobilenet"), kitten.clone());
            std::thread::spawn(move || {
                client()
                    .post(url)
                    .body(body)
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let (status, body) = call(reqwest::Method::DELETE, server.mgmt("/models/mobilenet"));
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Requests that arrived before the DELETE are answered; later ones find no model.
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        !statuses.contains(&503),
        "a queued request was dropped: {statuses:?}"
    );
}

#[test]
fn a_second_server_on_busy_ports_fails_clearly() {
    let store = ModelStore::new();
    let first = Server::start(store.path(), &[], "");
    let port = first.base.rsplit(':').next().unwrap().to_string();
    let cfg = store.path().join("busy.properties");
    std::fs::write(
        &cfg,
        format!(
            "inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:0\n"
        ),
    )
    .unwrap();
    let out = wasmserve(&[
        "start",
        "--foreground",
        "--ncs",
        "--ts-config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the inference API"
        )),
        "{err}"
    );
}
