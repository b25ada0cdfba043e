//! `jitOptimize` end to end: the same TorchScript file served plain, frozen,
//! optimized for inference and fused by oneDNN Graph (four archives on one server),
//! called with the same tensor over KServe v2 (three times, so that the fused graph,
//! compiled after the first call is profiled, answers too): the fp32 outputs stay
//! within 1e-4 of the plain forward's, the int8 MobileNetV2's too; and a bad value is
//! named when the archive is made.

mod common;

use common::*;
use serde_json::{Value, json};

/// `[1, 3, 224, 224]` → `[1000]`, Triton's keys.
const TENSORS: &str = "input:\n  - name: input__0\n    data_type: TYPE_FP32\n    dims: [3, 224, 224]\noutput:\n  - name: output__0\n    data_type: TYPE_FP32\n    dims: [1000]\n";

fn resnet18(dir: &std::path::Path) -> std::path::PathBuf {
    tch::manual_seed(0);
    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
    vs.freeze();
    let x = tch::Tensor::from_slice(&v2_input_values()).view([1, 3, 224, 224]);
    traced_model(dir, "resnet18.pt", &[x], |xs| {
        vec![tch::nn::ModuleT::forward_t(&net, &xs[0], false)]
    })
}

fn infer(server: &Server, model: &str) -> Vec<f32> {
    infer_values(&server.url(""), model, &v2_input_values())
}

/// The v2 inference of `values` by `model` of the server at `base` (its inference URL).
fn infer_values(base: &str, model: &str, values: &[f32]) -> Vec<f32> {
    let body = json!({"inputs": [{"name": "input__0", "shape": [1, 3, 224, 224],
                                  "datatype": "FP32", "data": values}]});
    let (status, answer): (u16, Value) = json(
        client()
            .post(format!("{base}/v2/models/{model}/infer"))
            .json(&body)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{model}: {answer}");
    answer["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn optimized_forwards_answer_as_the_plain_one() {
    let store = ModelStore::new();
    let resnet = resnet18(store.path());
    let mobilenet = asset("models/mobilenet_v2_quantized.pt");
    let mut names = Vec::new();
    for (model, file) in [("resnet", &resnet), ("mobilenet", &mobilenet)] {
        for jit in ["off", "freeze", "inference", "fuse"] {
            let name = format!("{model}_{jit}");
            store.archive_with_config(
                &name,
                file,
                "base_handler",
                &[],
                Some(&format!("{TENSORS}jitOptimize: {jit}\nminWorkers: 1\n")),
            );
            names.push(format!("{name}.mar"));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = Server::start(store.path(), &names, "intra_op_threads=1\n");
    for model in ["resnet", "mobilenet"] {
        let plain = infer(&server, &format!("{model}_off"));
        assert!(plain.iter().any(|v| *v != 0.0), "{model}: all zero");
        for jit in ["freeze", "inference", "fuse"] {
            for call in 1..=3 {
                let got = infer(&server, &format!("{model}_{jit}"));
                let diff = worst(&got, &plain);
                assert!(
                    diff <= 1e-4,
                    "{model} with jitOptimize: {jit}, call {call}: {diff} from the plain forward"
                );
            }
        }
    }
}

#[test]
fn a_fused_model_on_two_lanes_at_once_answers_as_the_plain_one() {
    // Two workers of one fused model, two clients at once with two different inputs, a
    // plain model served beside it: the fuser's switch is per thread, so each lane's
    // forwards are fused and the plain model's are not, and every answer stays within
    // 1e-4 of the plain forward's for its own input (the graph compiled for the
    // profiled shape serves both inputs: nothing of one input is kept for the other).
    let store = ModelStore::new();
    let resnet = resnet18(store.path());
    for (name, jit, workers) in [("plain", "off", 1), ("fused", "fuse", 2)] {
        store.archive_with_config(
            name,
            &resnet,
            "base_handler",
            &[],
            Some(&format!(
                "{TENSORS}jitOptimize: {jit}\nminWorkers: {workers}\nmaxWorkers: {workers}\n"
            )),
        );
    }
    let server = Server::start(
        store.path(),
        &["plain.mar", "fused.mar"],
        "intra_op_threads=1\n",
    );
    let base = server.url("");
    let inputs = [
        v2_input_values(),
        v2_input_values()
            .iter()
            .map(|v| 0.5 - v)
            .collect::<Vec<f32>>(),
    ];
    let plain: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| infer_values(&base, "plain", x))
        .collect();
    assert!(
        worst(&plain[0], &plain[1]) > 1e-2,
        "the inputs give the same answer"
    );
    std::thread::scope(|s| {
        for client in 0..2 {
            let (base, inputs, plain) = (&base, &inputs, &plain);
            s.spawn(move || {
                for call in 0..4 {
                    let which = (client + call) % 2;
                    let got = infer_values(base, "fused", &inputs[which]);
                    let diff = worst(&got, &plain[which]);
                    assert!(
                        diff <= 1e-4,
                        "client {client}, call {call}, input {which}: {diff} from the plain forward"
                    );
                    // The plain model between, on its own lane: still its own answer.
                    let again = infer_values(base, "plain", &inputs[which]);
                    let diff = worst(&again, &plain[which]);
                    assert!(diff <= 1e-4, "plain, client {client}, call {call}: {diff}");
                }
            });
        }
    });
}

#[test]
fn a_bad_value_is_named_when_the_archive_is_made() {
    let store = ModelStore::new();
    let model = scripted_model(
        store.path(),
        "identity.pt",
        "  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    return x",
    );
    let yaml = store.path().join("model-config.yaml");
    std::fs::write(&yaml, "jitOptimize: fast\n").unwrap();
    let out = wasmserve(&[
        "archive",
        "--model-name",
        "m",
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
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jitOptimize") && err.contains("`fast`"),
        "{err}"
    );
}
