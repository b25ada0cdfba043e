//! The model of state across replicas, as the README's "State across replicas" documents
//! it: every replica starts from the same model store (`load_models=all` in a shared
//! `config.properties`), the store is read at start, and the way to add a model to all of
//! them is to put its archive in the store and restart them one by one. Registration
//! through one replica's management API is refused where the deployment leaves
//! `enable_model_api` off (the default, and deploy/'s config), so a model cannot be
//! registered on one replica and silently missing on the others; where it is turned on,
//! a registration is that replica's alone, and a restart with `--ts-config` forgets it.
//! (`make balancer` runs three replicas so behind HAProxy, under load.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A replica over `config`, with its own log folder; returns once its models are loaded.
fn replica(config: &Path, logs: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec![
        "--ts-config".into(),
        config.display().to_string(),
        "--log-dir".into(),
        logs.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = Server::spawn(&args, &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while client()
        .get(server.url("/v2/health/ready"))
        .send()
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "not ready: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn predict(server: &Server, model: &str, body: &[u8]) -> (u16, String) {
    let resp = server.post(&format!("/predictions/{model}"), body.to_vec());
    (resp.status().as_u16(), resp.text().unwrap())
}

fn register(server: &Server, url: &str) -> (u16, String) {
    let resp = client()
        .post(server.mgmt(&format!("/models?url={url}&initial_workers=1")))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn replicas_share_the_model_store_and_a_registration_through_one_is_refused_or_its_own() {
    let store = ModelStore::new();
    store.mnist();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.properties");
    std::fs::write(
        &config,
        format!(
            "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\n\
             metrics_address=http://127.0.0.1:0\nmodel_store={}\nload_models=all\n",
            store.path().display()
        ),
    )
    .unwrap();
    let seven = std::fs::read(asset("images/mnist/7.png")).unwrap();
    let kitten = kitten_jpg();
    let logs = |name: &str| dir.path().join(name);

    let a = replica(&config, &logs("a-0"), &[]);
    let b = replica(&config, &logs("b-0"), &[]);
    for r in [&a, &b] {
        assert_eq!(predict(r, "mnist", &seven), (200, "7".into()));
    }

    // Registering through one replica is refused, on each: nothing is registered
    // anywhere, and the answer says what turns it on.
    store.mobilenet();
    for r in [&a, &b] {
        let (status, body) = register(r, "mobilenet.mar");
        assert_eq!(status, 405, "{body}");
        assert!(body.contains("enable_model_api"), "{body}");
        assert_eq!(predict(r, "mobilenet", &kitten).0, 404);
    }

    // The documented way: the archive is in the store now; restart the replicas one by
    // one, each on the same config, and every one serves it.
    let mut restarted = Vec::new();
    for (r, name) in [(a, "a-1"), (b, "b-1")] {
        assert!(r.stop().success());
        let fresh = replica(&config, &logs(name), &[]);
        let (status, body) = predict(&fresh, "mobilenet", &kitten);
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("{\"tabby\""), "{body}");
        assert_eq!(predict(&fresh, "mnist", &seven), (200, "7".into()));
        restarted.push(fresh);
    }
    drop(restarted);

    // With enable_model_api on, a registration is the one replica's: the other answers
    // 404 for it, and the replica itself forgets it when it restarts from --ts-config
    // (a snapshot is restored only by a start with neither --ts-config nor --models).
    let elsewhere = ModelStore::new();
    let digits = elsewhere.archive(
        "digits",
        &asset("models/vit4mnist.ptl"),
        guest("mnist_handler").to_str().unwrap(),
        &[],
    );
    let url = format!("file://{}", digits.display());
    let a = replica(&config, &logs("a-2"), &["--enable-model-api"]);
    let b = replica(&config, &logs("b-2"), &["--enable-model-api"]);
    let (status, body) = register(&a, &url);
    assert_eq!(status, 200, "{body}");
    assert_eq!(predict(&a, "digits", &seven), (200, "7".into()));
    let (status, body) = predict(&b, "digits", &seven);
    assert_eq!(status, 404, "{body}");
    assert!(a.stop().success());
    let a = replica(&config, &logs("a-3"), &["--enable-model-api"]);
    assert_eq!(
        predict(&a, "digits", &seven).0,
        404,
        "restored a registration"
    );
    assert_eq!(predict(&a, "mnist", &seven), (200, "7".into()));
    drop((a, b));
}
