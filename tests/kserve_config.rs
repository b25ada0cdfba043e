//! KServe's own TorchServe configuration starts wasmserve. The sample `config.properties`
//! of TorchServe's KServe integration (pytorch/serve `kubernetes/kserve/config.properties`,
//! Apache-2.0), unchanged apart from its paths, puts the inference and management APIs
//! on one address, which is served on one listener routed by path, each API with its own
//! key; `enable_envvars_config=true` lets `TS_*` variables set keys over the file and
//! the command line, as KServe's deployments do.

mod common;

use common::*;
use serde_json::Value;

/// The sample as it is, its model store at KServe's `/mnt/models/model-store`
/// (`scripts/image-check.sh` serves it with the image too).
const KSERVE_SAMPLE: &str = include_str!("fixtures/kserve-torchserve.config.properties");

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str, key: Option<&str>) -> (u16, String) {
    let mut req = client().get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn kserves_sample_config_serves_inference_and_management_on_one_port() {
    let store = ModelStore::new();
    store.mnist();
    let config_dir = store.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = config_dir.join("config.properties");
    let model_store = store.path().display().to_string();
    std::fs::write(
        &config,
        KSERVE_SAMPLE.replace("/mnt/models/model-store", &model_store),
    )
    .unwrap();

    // The ports as a deployment sets them: through TS_* variables, over the file. Both
    // APIs on one address, as in the sample.
    let shared = format!("http://127.0.0.1:{}", free_port());
    let key_file = store.path().join("keys.json");
    let env = [
        ("TS_INFERENCE_ADDRESS", shared.as_str()),
        ("TS_MANAGEMENT_ADDRESS", shared.as_str()),
        ("TS_METRICS_ADDRESS", "http://127.0.0.1:0"),
        ("TS_GRPC_INFERENCE_PORT", "0"),
        ("TS_GRPC_MANAGEMENT_PORT", "0"),
        ("TS_KEY_FILE", key_file.to_str().unwrap()),
        ("TS_NO_SUCH_SETTING", "ignored"),
    ];
    let args: Vec<String> = [
        "--ts-config",
        config.to_str().unwrap(),
        "--log-dir",
        store.path().join("logs").to_str().unwrap(),
        // The command line loses to the environment: this port is never used.
        "--set",
        "inference_address=http://127.0.0.1:1",
        // Not ephemeral (the helper's default): the variables above set them.
        "--set",
        "grpc_inference_port=7070",
    ]
    .map(String::from)
    .to_vec();
    let mut server = Server::spawn_with_auth(&args, &env);
    assert_eq!(server.base, shared, "{}", server.log());
    assert_eq!(server.management, shared);
    let keys = keys(&key_file);
    let inference = keys["inference"]["key"].as_str().unwrap().to_string();
    let management = keys["management"]["key"].as_str().unwrap().to_string();

    // The snapshot's model, with its settings, on the one port; each path with its key.
    let png = std::fs::read(asset("images/mnist/7.png")).unwrap();
    let predict = |key: &str| {
        let resp = client()
            .post(format!("{shared}/predictions/mnist"))
            .bearer_auth(key)
            .body(png.clone())
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(predict(&inference), (200, "7".to_string()));
    // The other API's key is refused as TorchServe refuses a wrong key.
    let (status, body) = predict(&management);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidKeyException"), "{body}");
    let (status, body) = get(&format!("{shared}/models/mnist"), Some(&management));
    assert_eq!(status, 200, "{body}");
    let described: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(described[0]["batchSize"], 5, "{described}");
    assert_eq!(described[0]["maxBatchDelay"], 200);
    let (status, body) = get(&format!("{shared}/models"), Some(&inference));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidKeyException"), "{body}");
    // KServe's probes and v2 stay on the inference side, without a key for health.
    assert_eq!(get(&format!("{shared}/v2/health/ready"), None).0, 200);
    assert_eq!(get(&format!("{shared}/ping"), None).0, 200);
    let (status, body) = get(&format!("{shared}/v2/models/mnist"), Some(&inference));
    assert_eq!(status, 200, "{body}");
    // The description lists both APIs' paths.
    let (status, body) = get(&format!("{shared}/api-description"), Some(&inference));
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    for path in ["/predictions/{model_name}", "/models"] {
        assert!(
            api["paths"].get(path).is_some(),
            "{path} missing: {body:.300}"
        );
    }
    // Errors in each API's own format: TorchServe's for management, v2's for KServe.
    let (status, body) = get(&format!("{shared}/models/nope"), Some(&management));
    assert_eq!(status, 404);
    assert!(body.contains("\"code\": 404"), "{body}");
    let (status, body) = get(&format!("{shared}/v2/models/nope"), Some(&inference));
    assert_eq!(status, 404);
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(),
        "{body}"
    );

    // The metrics API stays on its own port, as the sample has it.
    let metrics = server.metrics_url("/metrics");
    assert!(!metrics.starts_with(&shared));
    let (status, text) = get(&metrics, None);
    assert_eq!(status, 200);
    assert!(text.contains("ts_inference_requests_total"), "{text:.300}");
    // The access log names the API each request was for (its writer flushes on its
    // own thread).
    let access_log = || {
        std::fs::read_dir(store.path().join("logs"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("access_log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>()
    };
    let wanted = [
        "\"GET /models/mnist HTTP/1.1\" 200",
        "api=management",
        "\"POST /predictions/mnist HTTP/1.1\" 200",
        "api=inference",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !wanted.iter().all(|w| access_log().contains(w)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = access_log();
    for line in log.lines() {
        if line.contains("\"GET /models/mnist HTTP") {
            assert!(line.contains("api=management"), "{line}");
        }
        if line.contains("\"POST /predictions/mnist HTTP") {
            assert!(line.contains("api=inference"), "{line}");
        }
    }
    assert!(wanted.iter().all(|w| log.contains(w)), "{log}");
    assert!(
        server.log().contains("TS_INFERENCE_ADDRESS"),
        "{}",
        server.log()
    );
}

#[test]
fn without_enable_envvars_config_the_variables_change_nothing() {
    let store = ModelStore::new();
    let dir = store.path();
    let config = dir.join("plain.properties");
    std::fs::write(
        &config,
        "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nmetrics_address=http://127.0.0.1:0\n",
    )
    .unwrap();
    let taken = format!("http://127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "--ts-config",
        config.to_str().unwrap(),
        "--log-dir",
        dir.join("logs").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let server = Server::spawn(&args, &[("TS_INFERENCE_ADDRESS", taken.as_str())]);
    assert_ne!(server.base, taken);
    assert_eq!(get(&format!("{}/ping", server.base), None).0, 200);
}
