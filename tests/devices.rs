//! Devices per model, end to end with the real binary: `deviceType`/`deviceIds` in a
//! model's `model-config.yaml` and `number_of_gpu` in `config.properties` decide where
//! its workers run; `describe` shows each worker's `gpu` and `gpuUsage`, and the
//! handler's context names the device (`tests/guests/tensor_probe` echoes it).
//!
//! The test asks the libtorch it is linked with (the server's) how many GPUs there are
//! and checks what must follow: without one (a CPU build, or a CUDA build without a
//! driver), a model that asks for a GPU fails to load with the reason and the others
//! serve on the CPU; with GPUs, workers are spread over them, one copy of the weights
//! per GPU.

mod common;

use common::*;
use serde_json::Value;

fn usable_gpus() -> usize {
    wasmserve::core::device::Gpus::probe(None).usable
}

/// An identity model behind the probe handler, as `name.mar`, with `yaml`.
fn probe_archive(store: &ModelStore, name: &str, yaml: &str) {
    let model = store.path().join("identity.pt");
    if !model.exists() {
        scripted_model(
            store.path(),
            "identity.pt",
            "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    return x",
        );
    }
    store.archive_with_config(
        name,
        &model,
        guest("tensor_probe").to_str().unwrap(),
        &[],
        Some(yaml),
    );
}

/// The device the handler of `model` says it runs on (one prediction).
fn device_of(server: &Server, model: &str) -> String {
    let kitten = std::fs::read(asset("images/kitten_small.jpg")).unwrap();
    let resp = server.post(&format!("/predictions/{model}"), kitten);
    assert_eq!(resp.status(), 200, "{model}");
    resp.headers()["x-probe-device"]
        .to_str()
        .unwrap()
        .to_string()
}

fn workers(server: &Server, model: &str) -> Vec<Value> {
    server.describe(model)["workers"]
        .as_array()
        .unwrap()
        .clone()
}

fn register(server: &Server, archive: &str) -> (u16, Value) {
    json(
        client()
            .post(server.mgmt(&format!(
                "/models?url={archive}&initial_workers=1&synchronous=true"
            )))
            .send()
            .unwrap(),
    )
}

#[test]
fn models_run_where_their_config_says() {
    let gpus = usable_gpus();
    let store = ModelStore::new();
    probe_archive(
        &store,
        "on_cpu",
        "deviceType: cpu\nminWorkers: 2\nmaxWorkers: 2\n",
    );
    probe_archive(&store, "anywhere", "minWorkers: 2\nmaxWorkers: 2\n");
    probe_archive(&store, "on_gpu", "deviceType: gpu\ndeviceIds: [0]\n");
    let server = Server::start(
        store.path(),
        &["on_cpu.mar", "anywhere.mar"],
        "enable_model_api=true\n",
    );

    // deviceType: cpu is the CPU, whatever the machine has.
    let cpu_workers = workers(&server, "on_cpu");
    assert_eq!(cpu_workers.len(), 2);
    for w in &cpu_workers {
        assert_eq!(w["gpu"], false, "{w}");
        assert_eq!(w["gpuUsage"], "N/A", "{w}");
    }
    assert_eq!(device_of(&server, "on_cpu"), "cpu");

    // No key: the GPUs where there are any, round-robin, else the CPU.
    let any = workers(&server, "anywhere");
    assert_eq!(any.len(), 2);
    let device = device_of(&server, "anywhere");
    if gpus == 0 {
        assert!(any.iter().all(|w| w["gpu"] == false), "{any:?}");
        assert_eq!(device, "cpu");
    } else {
        assert!(any.iter().all(|w| w["gpu"] == true), "{any:?}");
        assert!(device.starts_with("cuda:"), "{device}");
        if gpus > 1 {
            // Two lanes over two or more GPUs: one on each of the first two.
            let mut ids: Vec<&str> = any
                .iter()
                .map(|w| w["gpuUsage"].as_str().unwrap().split(' ').next().unwrap())
                .collect();
            ids.sort();
            assert_eq!(ids, ["gpuId::0", "gpuId::1"], "{any:?}");
        }
    }

    // deviceType: gpu.
    let (status, body) = register(&server, "on_gpu.mar");
    if gpus == 0 {
        assert!(status >= 400, "{status} {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("asks for a GPU") && message.contains("deviceType: cpu"),
            "the reason and the next step: {message}"
        );
        // The rest serve on.
        assert_eq!(device_of(&server, "on_cpu"), "cpu");
        let (_, list) = json(client().get(server.mgmt("/models")).send().unwrap());
        let names: Vec<&str> = list["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["modelName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["anywhere", "on_cpu"]);
    } else {
        assert_eq!(status, 200, "{body}");
        assert_eq!(device_of(&server, "on_gpu"), "cuda:0");
        let w = workers(&server, "on_gpu");
        assert_eq!(w[0]["gpu"], true);
        assert!(
            w[0]["gpuUsage"].as_str().unwrap().starts_with("gpuId::"),
            "{w:?}"
        );
    }
}

#[test]
fn number_of_gpu_zero_keeps_models_on_the_cpu() {
    let gpus = usable_gpus();
    let store = ModelStore::new();
    probe_archive(&store, "anywhere", "minWorkers: 1\n");
    probe_archive(&store, "on_gpu", "deviceIds: [0]\n");
    let server = Server::start(
        store.path(),
        &["anywhere.mar"],
        "number_of_gpu=0\nenable_model_api=true\n",
    );
    assert_eq!(device_of(&server, "anywhere"), "cpu");
    let (status, body) = register(&server, "on_gpu.mar");
    assert!(status >= 400, "{status} {body}");
    let message = body["message"].as_str().unwrap_or_default();
    let why = if gpus == 0 {
        "no CUDA device"
    } else {
        "number_of_gpu=0"
    };
    assert!(message.contains(why), "{message}");
}

#[test]
fn a_malformed_device_type_is_named() {
    // Checked when the archive is made, and again when it is registered.
    let store = ModelStore::new();
    let model = scripted_model(
        store.path(),
        "identity.pt",
        "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    return x",
    );
    let yaml = store.path().join("model-config.yaml");
    std::fs::write(&yaml, "deviceType: tpu\n").unwrap();
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "tpu",
        "-v",
        "1.0",
        "--serialized-file",
        model.to_str().unwrap(),
        "--handler",
        "base_handler",
        "--config-file",
        yaml.to_str().unwrap(),
        "--export-path",
        store.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("deviceType") && message.contains("`tpu`"),
        "{message}"
    );
    let ids = store.path().join("ids.yaml");
    std::fs::write(&ids, "deviceIds: gpu0\n").unwrap();
    let mut args: Vec<String> = ["archive", "--model-name", "ids", "-v", "1.0"]
        .map(String::from)
        .to_vec();
    for (flag, value) in [
        ("--serialized-file", &model),
        ("--config-file", &ids),
        ("--export-path", &store.path().to_path_buf()),
    ] {
        args.push(flag.into());
        args.push(value.display().to_string());
    }
    args.extend(["--handler".into(), "base_handler".into()]);
    let out = wasmserve(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("deviceIds") && message.contains("GPU indices"),
        "{message}"
    );
}
