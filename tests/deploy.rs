//! The deployment manifests (`deploy/kserve`, `deploy/k8s`) and the Containerfile are
//! checked by `tests/clients/deploy_check.py`, with the `kubernetes` and `kserve` Python
//! models of the clients venv (`scripts/install-clients.sh`: kubernetes 37.0.1, kserve
//! 0.21.0, pinned): every document parses and builds into its model with no unknown
//! field, and the manifests agree with each other, with `config.properties` and with the
//! image. Broken copies show that each kind of mistake is caught. The image itself and
//! `podman kube play` of the Deployment are checked by `make image-check`, not here (it
//! needs podman).

mod common;

use std::path::{Path, PathBuf};

use common::clients::clients;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The checker's results for each root, in order: the errors it found.
fn check(roots: &[&Path]) -> Vec<Vec<String>> {
    let script = root().join("tests/clients/deploy_check.py");
    let out = std::process::Command::new(&clients().python)
        .arg(&script)
        .args(roots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy_check.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// A copy of `deploy/` and the Containerfile with `file`'s `from` replaced by `to` (once).
fn broken(dir: &Path, name: &str, file: &str, from: &str, to: &str) -> PathBuf {
    let copy = dir.join(name);
    for sub in ["deploy/kserve", "deploy/k8s", "deploy/prometheus"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
        for entry in std::fs::read_dir(root().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, copy.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(root().join("Containerfile"), copy.join("Containerfile")).unwrap();
    let target = copy.join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(from), "{file} has no {from:?} to break");
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    copy
}

#[test]
fn the_manifests_are_valid_and_agree_with_each_other_and_the_image() {
    let errors = check(&[&root()]);
    assert!(errors[0].is_empty(), "{:#?}", errors[0]);
}

#[test]
fn each_kind_of_mistake_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    // (what is broken, file, from, to, a piece of the error it must give)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "typo",
            "deploy/k8s/deployment.yaml",
            "readinessProbe:",
            "readinesProbe:",
            "V1Container has no field readinesProbe",
        ),
        (
            "not-yaml",
            "deploy/k8s/pdb.yaml",
            "spec:",
            "spec: [",
            "not YAML",
        ),
        (
            "type",
            "deploy/kserve/cluster-serving-runtime.yaml",
            "containerPort: 7070",
            "containerPort: seven",
            "int expected",
        ),
        (
            "required",
            "deploy/k8s/hpa.yaml",
            "  maxReplicas: 10\n",
            "",
            "Field required",
        ),
        (
            "selector",
            "deploy/k8s/service.yaml",
            "app.kubernetes.io/component: model-server\n  ports:",
            "app.kubernetes.io/component: server\n  ports:",
            "does not match the Deployment's pod labels",
        ),
        (
            "target-port",
            "deploy/k8s/service.yaml",
            "targetPort: grpc",
            "targetPort: grcp",
            "targets 'grcp'",
        ),
        (
            "probe-port",
            "deploy/kserve/cluster-serving-runtime.yaml",
            "path: /v2/health/ready\n          port: 8080",
            "path: /v2/health/ready\n          port: 8085",
            "readinessProbe port 8085",
        ),
        (
            "layout",
            "deploy/kserve/cluster-serving-runtime.yaml",
            "--ts-config=/mnt/models/config/config.properties",
            "--ts-config=/mnt/models/config.properties",
            "--ts-config /mnt/models/config/config.properties",
        ),
        (
            "h2c",
            "deploy/kserve/cluster-serving-runtime.yaml",
            "name: h2c",
            "name: grpc2",
            "no port named h2c",
        ),
        (
            "prometheus",
            "deploy/kserve/cluster-serving-runtime.yaml",
            "--set=metrics_address=http://0.0.0.0:8082",
            "--set=metrics_address=http://0.0.0.0:9082",
            "prometheus.kserve.io/port",
        ),
        (
            "pinned",
            "deploy/kserve/config.properties",
            "metrics_address=http://0.0.0.0:8082",
            "metrics_address=http://0.0.0.0:9082",
            "the runtime's args pin",
        ),
        (
            "hpa-target",
            "deploy/k8s/hpa.yaml",
            "    name: wasmserve\n",
            "    name: wasmserv\n",
            "scaleTargetRef",
        ),
        (
            "root",
            "deploy/k8s/deployment.yaml",
            "            runAsNonRoot: true\n            runAsUser: 1000",
            "            runAsNonRoot: false\n            runAsUser: 1000",
            "runAsNonRoot",
        ),
        (
            "image-cmd",
            "Containerfile",
            "\"--log-dir\", \"/home/wasmserve/logs\"",
            "\"--log-dir\", \"/var/log\"",
            "Containerfile: CMD",
        ),
        (
            "scrape",
            "deploy/k8s/deployment.yaml",
            "prometheus.io/scrape: \"true\"",
            "prometheus.io/scrape: \"false\"",
            "keeps prometheus_io_scrape",
        ),
        (
            "configmap",
            "deploy/k8s/configmap.yaml",
            "load_models=all",
            "load_models=mobilenet.mar",
            "is not deploy/kserve/config.properties",
        ),
    ];
    let copies: Vec<PathBuf> = cases
        .iter()
        .map(|(name, file, from, to, _)| broken(dir.path(), name, file, from, to))
        .collect();
    let refs: Vec<&Path> = copies.iter().map(|p| p.as_path()).collect();
    let results = check(&refs);
    for ((name, _, _, _, want), errors) in cases.iter().zip(&results) {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{name}: no error with {want:?} in {errors:#?}"
        );
    }
}
