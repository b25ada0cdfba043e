//! Secure defaults, end to end: token authorization (on unless disabled), HTTPS through
//! rustls, and a graceful stop that finishes the requests in flight.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn token_authorization_is_on_by_default() {
    let store = ModelStore::new();
    store.mobilenet();
    let (mut server, key_file) = start_with_keys(&store, &["mobilenet.mar"]);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is for its owner only");
    let k = keys(&key_file);
    let inference = k["inference"]["key"].as_str().unwrap().to_string();
    let management = k["management"]["key"].as_str().unwrap().to_string();
    let api = k["API"]["key"].as_str().unwrap().to_string();
    assert!(
        k["inference"]["expiration time"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let metrics_url = server.metrics_url("/metrics");
    let server = server;
    let http = client();
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let predict = |key: Option<&str>| {
        let mut req = http
            .post(server.url("/predictions/mobilenet"))
            .body(kitten.clone());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        json(req.send().unwrap())
    };
    let refused = serde_json::json!({
        "code": 400,
        "type": "InvalidKeyException",
        "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
    });
    assert_eq!(predict(None), (400, refused.clone()));
    assert_eq!(predict(Some("wrong")), (400, refused.clone()));
    assert_eq!(
        predict(Some(&management)).0,
        400,
        "each API has its own key"
    );
    assert_eq!(predict(Some(&inference)).0, 200);

    // The management API wants its own key.
    let list = |key: Option<&str>| {
        let mut req = http.get(server.mgmt("/models"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        json(req.send().unwrap())
    };
    assert_eq!(list(None), (400, refused.clone()));
    assert_eq!(list(Some(&inference)).0, 400);
    assert_eq!(list(Some(&management)).0, 200);

    // Health checks and the metrics API need no key (on purpose; TorchServe's /ping
    // wants the inference key).
    assert_eq!(json(http.get(server.url("/ping")).send().unwrap()).0, 200);
    let metrics = http.get(&metrics_url).send().unwrap();
    assert_eq!(metrics.status().as_u16(), 200);

    // A new inference key, with the API key; the old one stops working.
    let (status, fresh) = json(
        http.get(server.mgmt("/token?type=inference"))
            .bearer_auth(&management)
            .send()
            .unwrap(),
    );
    assert_eq!((status, fresh), (400, refused.clone()), "needs the API key");
    let (status, fresh) = json(
        http.get(server.mgmt("/token?type=inference"))
            .bearer_auth(&api)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
    let new_key = fresh["inference"]["key"].as_str().unwrap().to_string();
    assert_ne!(new_key, inference);
    assert_eq!(keys(&key_file)["inference"]["key"], new_key.as_str());
    assert_eq!(predict(Some(&inference)).0, 400);
    assert_eq!(predict(Some(&new_key)).0, 200);
}

#[test]
fn https_through_rustls_when_certificate_files_are_set() {
    let store = ModelStore::new();
    store.mobilenet();
    // A CA, and a server certificate for 127.0.0.1 signed by it (webpki refuses a CA
    // certificate used as the server's own).
    let dir = store.path();
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("cert.csr"),
    );
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |x: &'static str| std::ffi::OsStr::new(x);
    let ec = [
        s("-newkey"),
        s("ec"),
        s("-pkeyopt"),
        s("ec_paramgen_curve:prime256v1"),
        s("-nodes"),
    ];
    let mut a = vec![
        s("req"),
        s("-x509"),
        s("-days"),
        s("1"),
        s("-subj"),
        s("/CN=test CA"),
    ];
    a.extend(ec);
    a.extend([s("-keyout"), ca_key.as_os_str(), s("-out"), ca.as_os_str()]);
    openssl(&a);
    let mut a = vec![s("req"), s("-subj"), s("/CN=localhost")];
    a.extend(ec);
    a.extend([s("-keyout"), key.as_os_str(), s("-out"), csr.as_os_str()]);
    openssl(&a);
    openssl(&[
        s("x509"),
        s("-req"),
        s("-days"),
        s("1"),
        s("-in"),
        csr.as_os_str(),
        s("-CA"),
        ca.as_os_str(),
        s("-CAkey"),
        ca_key.as_os_str(),
        s("-CAcreateserial"),
        s("-extfile"),
        ext.as_os_str(),
        s("-out"),
        cert.as_os_str(),
    ]);
    let mut server = Server::start(
        store.path(),
        &["mobilenet.mar"],
        &format!(
            "inference_address=https://127.0.0.1:0\nmanagement_address=https://127.0.0.1:0\n\
             metrics_address=https://127.0.0.1:0\ncertificate_file={}\nprivate_key_file={}\n\
             enable_grpc_ssl=true",
            cert.display(),
            key.display()
        ),
    );
    assert!(
        server.url("/").starts_with("https://"),
        "{}",
        server.url("/")
    );
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let https = reqwest::blocking::Client::builder()
        .add_root_certificate(root)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let (status, body) = json(
        https
            .post(server.url("/predictions/mobilenet"))
            .body(kitten)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200);
    assert!(body.get("tabby").is_some(), "{body}");
    assert_eq!(
        json(https.get(server.mgmt("/models")).send().unwrap()).0,
        200
    );
    let metrics = https.get(server.metrics_url("/metrics")).send().unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    // gRPC over TLS with the same files (enable_grpc_ssl), through TorchServe's own
    // client; a plaintext client gets nowhere.
    assert!(server.stdout_has("gRPC inference API on grpcs://"));
    let stubs = common::clients::clients()
        .torchserve_grpc
        .display()
        .to_string();
    let ping = |tls: &[&str]| {
        let mut args = vec![
            "--stubs",
            stubs.as_str(),
            "--inference",
            server.grpc.as_str(),
        ];
        args.extend_from_slice(tls);
        args.extend(["--timeout", "10", "ping"]);
        common::clients::script("ts_grpc.py", &args)
    };
    let ca_path = ca.display().to_string();
    assert_eq!(ping(&["--tls-ca", &ca_path])["health"]["status"], "Healthy");
    assert_eq!(ping(&[])["error"]["code"], "UNAVAILABLE");
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = server.url("/ping").replacen("https://", "http://", 1);
    assert!(client().get(plain).send().is_err());
    // An https:// address without the files is a startup error naming the keys.
    let cfg = store.path().join("bad.properties");
    std::fs::write(&cfg, "inference_address=https://127.0.0.1:0\n").unwrap();
    let out = wasmserve(&[
        "start",
        "--foreground",
        "--ts-config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate_file"), "{err}");
}

#[test]
fn a_stop_finishes_the_requests_in_flight_and_exits_0() {
    let store = ModelStore::new();
    // A long batch delay keeps the request in the lane when the stop comes (a second
    // after it was sent: room for a slow machine to deliver it).
    store.mobilenet_with_config(Some(
        "batchSize: 8\nmaxBatchDelay: 3000\nminWorkers: 1\nmaxWorkers: 1\n",
    ));
    let server = Server::start(store.path(), &["mobilenet.mar"], "");
    let url = server.url("/predictions/mobilenet");
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    let in_flight = std::thread::spawn(move || {
        let resp = client().post(url).body(kitten).send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    });
    std::thread::sleep(Duration::from_millis(1000));
    let pid = server.pid();
    let base = server.url("/ping");
    let stopping = std::thread::spawn(move || server.stop());
    std::thread::sleep(Duration::from_millis(200));
    // No new connections once stopping.
    assert!(
        client().get(&base).send().is_err(),
        "still accepting after SIGTERM"
    );
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tabby"), "{body}");
    let exit = stopping.join().unwrap();
    assert!(exit.success(), "pid {pid} exited with {exit:?}");
}
