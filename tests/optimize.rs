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
    let body = json!({"inputs": [{"name": "input__0", "shape": [1, 3, 224, 224],
                                  "datatype": "FP32", "data": v2_input_values()}]});
    let (status, answer): (u16, Value) = json(
        client()
            .post(server.url(&format!("/v2/models/{model}/infer")))
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
