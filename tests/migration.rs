//! What a TorchServe user tries first when moving over, with the real binary: the
//! registration parameters TorchServe's Postman collection uses (`handler=`,
//! `runtime=`, `startup_timeout=`, `synchronous=false`, an empty `url=`), the
//! `models={...}` key of `config.properties`, a mistyped key told apart from a
//! TorchServe key that does not apply, `curl --data-binary` bodies, `/api-description`,
//! `.tar.gz` archives, a background start whose startup model failed, and a config
//! with Java's `.properties` escapes and `load_models=ALL`, as TorchServe writes and
//! reads it.

mod common;

use common::*;
use serde_json::json;

fn register(server: &Server, query: &str) -> (u16, serde_json::Value) {
    json(
        client()
            .post(server.mgmt(&format!("/models?{query}")))
            .send()
            .unwrap(),
    )
}

#[test]
fn registration_takes_torchserves_parameters() {
    let store = ModelStore::new();
    // An archive whose own handler does not classify: handler= gives it one.
    store.archive_with_config(
        "plain",
        &asset("models/mobilenet_v2_quantized.pt"),
        "base_handler",
        &[&asset("images/index_to_name.json")],
        None,
    );
    let server = Server::start(store.path(), &[], "enable_model_api=true");

    let (status, body) = register(&server, "url=plain.mar&handler=no_such_handler");
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("no_such_handler") && message.contains("image_classifier"),
        "{message}"
    );
    assert_eq!(
        json(client().get(server.mgmt("/models")).send().unwrap()).1["models"],
        json!([])
    );

    for bad in ["runtime=python4", "startup_timeout=soon"] {
        let (status, body) = register(&server, &format!("url=plain.mar&{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["type"], "BadRequestException", "{bad}: {body}");
    }
    // TorchServe's answers (its Postman data): no url 400, an empty one 404.
    let (status, body) = register(&server, "model_name=x");
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("Parameter url is required.")),
        "{body}"
    );
    let (status, body) = register(&server, "url=&model_name=x");
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("ModelNotFoundException")),
        "{body}"
    );

    // TorchServe's own spelling of its built-in handler works too.
    let (status, body) = register(
        &server,
        "url=plain.mar&handler=serve/ts/torch_handler/image_classifier.py:handle&runtime=python&startup_timeout=120&initial_workers=1",
    );
    assert_eq!(status, 200, "{body}");
    let (status, classes) = json(server.post("/predictions/plain", kitten_jpg()));
    assert_eq!(status, 200, "{classes}");
    assert!(
        classes.get("tabby").is_some(),
        "handler= did not apply: {classes}"
    );

    // Asynchronous registration: registered now (200, as TorchServe), workers after.
    store.mobilenet();
    let (status, body) = register(
        &server,
        "url=mobilenet.mar&synchronous=false&initial_workers=1",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["status"].as_str().unwrap().contains("registered"),
        "{body}"
    );
    let ready = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.post("/predictions/mobilenet", kitten_jpg()).status() == 200
    });
    assert!(ready, "the asynchronously registered model never served");
}

#[test]
fn config_models_key_sets_each_models_settings() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar"],
        r#"models={"mobilenet": {"1.0": {"defaultVersion": true, "marName": "mobilenet.mar", "minWorkers": 2, "maxWorkers": 3, "batchSize": 3, "maxBatchDelay": 17, "responseTimeout": 42}}}"#,
    );
    let (status, d) = json(
        client()
            .get(server.mgmt("/models/mobilenet"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{d}");
    let d = &d[0];
    assert_eq!(
        (
            d["minWorkers"].as_u64(),
            d["maxWorkers"].as_u64(),
            d["batchSize"].as_u64()
        ),
        (Some(2), Some(3), Some(3)),
        "{d}"
    );
    assert_eq!(
        (d["maxBatchDelay"].as_u64(), d["responseTimeout"].as_u64()),
        (Some(17), Some(42))
    );
    assert_eq!(d["workers"].as_array().unwrap().len(), 2, "{d}");

    // A value the server cannot take fails the start, naming the key.
    let cfg = store.path().join("bad.properties");
    std::fs::write(
        &cfg,
        r#"models={"mobilenet": {"1.0": {"batchSize": "four"}}}"#,
    )
    .unwrap();
    let out = wasmserve(&[
        "start",
        "--foreground",
        "--ts-config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("models") && err.contains("batchSize"), "{err}");
}

#[test]
fn a_typo_in_a_key_is_warned_about_and_a_torchserve_key_is_not() {
    let store = ModelStore::new();
    let server = Server::start(
        store.path(),
        &[],
        "inferenceaddress=http://127.0.0.1:9999\nnumber_of_netty_threads=4\nenable_envvars_config=true",
    );
    assert!(
        server.wait_for_log(
            "unknown config key `inferenceaddress` (did you mean `inference_address`?)",
            std::time::Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(
        !log.contains("unknown config key `number_of_netty_threads`"),
        "{log}"
    );
    assert!(
        !log.contains("unknown config key `enable_envvars_config`"),
        "{log}"
    );
}

#[test]
fn a_config_as_torchserve_writes_it_reads_as_torchserve_reads_it() {
    // Java's .properties escapes (TorchServe writes its snapshots with
    // `Properties.store`: `\:` in values, the JSON's line breaks as `\n`) and
    // `load_models=ALL` in TorchServe's spelling.
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(
        store.path(),
        &[],
        concat!(
            "load_models=ALL\n",
            "models={\\n  \"mobilenet\"\\: {\\n    \"1.0\"\\: {\\n",
            "      \"minWorkers\"\\: 2,\\n      \"maxWorkers\"\\: 2\\n    }\\n  }\\n}\n",
        ),
    );
    let (status, body) = json(
        client()
            .get(server.mgmt("/models/mobilenet"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["workers"].as_array().unwrap().len(), 2, "{body}");
    let kitten = std::fs::read(asset("images/kitten.jpg")).unwrap();
    assert_eq!(server.post("/predictions/mobilenet", kitten).status(), 200);
}

#[test]
fn curl_data_binary_sends_a_form_that_is_the_raw_body() {
    let store = ModelStore::new();
    store.mobilenet();
    let server = Server::start(store.path(), &["mobilenet=mobilenet.mar"], "");
    let (status, body) = json(
        client()
            .post(server.url("/predictions/mobilenet"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(kitten_jpg())
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.get("tabby").is_some(), "{body}");
    // A real form still is one: its `data` field is the input.
    let (status, body) = json(
        client()
            .post(server.url("/predictions/mobilenet"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("other=1")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["type"], "BadRequestException",
        "a client's 400 is typed as one: {body}"
    );
}

#[test]
fn api_description_is_options_slash() {
    let store = ModelStore::new();
    let server = Server::start(store.path(), &[], "");
    for url in [
        server.url("/api-description"),
        server.mgmt("/api-description"),
    ] {
        let (status, body) = json(client().get(&url).send().unwrap());
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            body["openapi"].as_str().unwrap().starts_with("3."),
            "{body}"
        );
    }
}

#[test]
fn tar_gz_archives_are_written_and_served() {
    let store = ModelStore::new();
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "mobilenet",
        "-v",
        "1.0",
        "--serialized-file",
        asset("models/mobilenet_v2_quantized.pt").to_str().unwrap(),
        "--handler",
        "image_classifier",
        "--extra-files",
        asset("images/index_to_name.json").to_str().unwrap(),
        "--archive-format",
        "tgz",
        "--export-path",
        store.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tgz = store.path().join("mobilenet.tar.gz");
    // torch-model-archiver's layout: everything under a folder named after the model.
    let listing = std::process::Command::new("tar")
        .arg("tzf")
        .arg(&tgz)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("mobilenet/MAR-INF/MANIFEST.json"),
        "{listing}"
    );
    std::fs::write(store.path().join("notes.txt"), "not an archive").unwrap();
    let server = Server::start(store.path(), &["all"], "");
    let (status, body) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_background_start_names_the_startup_model_that_failed() {
    let store = ModelStore::new();
    store.mobilenet();
    std::fs::write(store.path().join("broken.mar"), b"not a zip").unwrap();
    let cfg = store.path().join("c.properties");
    std::fs::write(
        &cfg,
        "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nmetrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\n",
    )
    .unwrap();
    let pid_file = store.path().join("wasmserve.pid");
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .env("WASMSERVE_PID_FILE", &pid_file)
            .output()
            .unwrap()
    };
    let logs = store.path().join("logs");
    let out = run(&[
        "start",
        "--disable-token-auth",
        "--model-store",
        store.path().to_str().unwrap(),
        "--models",
        "mobilenet.mar,broken.mar",
        "--ts-config",
        cfg.to_str().unwrap(),
        "--log-dir",
        logs.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // As TorchServe, it serves the models that loaded; unlike a silent start, it says
    // which one did not, and why.
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("a startup model was not loaded: broken.mar")
            && stderr.contains("not a model archive"),
        "{stderr}"
    );
    let stop = run(&["stop"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );

    // `all` without a model store is a mistake, said before anything starts.
    let out = run(&[
        "start",
        "--disable-token-auth",
        "--models",
        "all",
        "--ts-config",
        cfg.to_str().unwrap(),
        "--log-dir",
        logs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model-store"));
}
