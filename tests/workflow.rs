//! TorchServe's workflow API end to end: `.war` archives made by `wasmserve
//! workflow-archive` (and by hand in torch-workflow-archiver's layout), registered on
//! the management API, their models served as `<workflow>__<node>`, requests run
//! through the DAG on `/wfpredict`. The example of examples/workflow_join: an image
//! classified by MobileNetV2 and, in parallel, by the ASL letter model, the two answers
//! joined by a function node.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

/// The example's specification: `pre` hands the image to both models, `join`
/// combines their answers.
const EXAMPLE: &str = "models:
  min-workers: 1
  max-workers: 1
  batch-size: 1
  max-batch-delay: 20
  retry-attempts: 1
  timeout-ms: 60000
  mobilenet:
    url: mobilenet.mar
  asl:
    url: asl.mar
dag:
  pre: [mobilenet, asl]
  mobilenet: [join]
  asl: [join]
";

/// The 24 letters the ASL model gets right (it reads S as X and V as W).
const STABLE_LETTERS: &str = "ABCDEFGHIJKLMNOPQRTUWXYZ";

/// A store with the two models' archives.
fn store() -> ModelStore {
    let store = ModelStore::new();
    store.mobilenet();
    store.archive(
        "asl",
        &asset("models/asl.ptl"),
        guest("asl_handler").to_str().unwrap(),
        &[],
    );
    store
}

/// `wasmserve workflow-archive` into `dir`; its output.
fn workflow_archive(
    dir: &Path,
    name: &str,
    spec: &str,
    handler: Option<&Path>,
) -> std::process::Output {
    let spec_file = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec_file, spec).unwrap();
    let mut args = vec![
        "workflow-archive".to_string(),
        "--workflow-name".into(),
        name.into(),
        "--spec-file".into(),
        spec_file.display().to_string(),
        "--export-path".into(),
        dir.display().to_string(),
        "-f".into(),
    ];
    if let Some(h) = handler {
        args.extend(["--handler".into(), h.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    wasmserve(&args)
}

/// [`workflow_archive`] that must succeed.
fn war(dir: &Path, name: &str, spec: &str, handler: Option<&Path>) -> PathBuf {
    let out = workflow_archive(dir, name, spec, handler);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(format!("{name}.war"))
}

/// A `.war` in torch-workflow-archiver's own layout, written by hand (no checks):
/// `WAR-INF/MANIFEST.json` and the files flat at the root.
fn raw_war(dir: &Path, name: &str, spec: &str, handler: Option<(&str, &[u8])>) -> PathBuf {
    let path = dir.join(format!("{name}.war"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    let manifest = json!({
        "createdOn": "01/02/2024 10:00:00",
        "workflow": {"workflowName": name, "specFile": "spec.yaml",
                     "handler": handler.map(|h| h.0).unwrap_or("")},
        "archiverVersion": "0.2.15",
    });
    zip.start_file("WAR-INF/MANIFEST.json", opts).unwrap();
    zip.write_all(manifest.to_string().as_bytes()).unwrap();
    zip.start_file("spec.yaml", opts).unwrap();
    zip.write_all(spec.as_bytes()).unwrap();
    if let Some((file, bytes)) = handler {
        zip.start_file(file, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A war that registration refuses: its name, spec, handler, status and reason.
type Refusal<'a> = (&'a str, String, Option<(&'a str, &'a [u8])>, u16, &'a str);

fn register(server: &Server, url: &str) -> (u16, Value) {
    json(
        client()
            .post(server.mgmt(&format!("/workflows?url={url}")))
            .send()
            .unwrap(),
    )
}

fn models(server: &Server) -> Vec<String> {
    let (status, body) = json(client().get(server.mgmt("/models")).send().unwrap());
    assert_eq!(status, 200, "{body}");
    body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["modelName"].as_str().unwrap().to_string())
        .collect()
}

fn wfpredict(server: &Server, name: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    server.post(&format!("/wfpredict/{name}"), body)
}

fn image(rel: &str) -> Vec<u8> {
    std::fs::read(asset(rel)).unwrap()
}

fn served(config: &str) -> (ModelStore, Server) {
    let store = store();
    let server = Server::start(store.path(), &[], config);
    (store, server)
}

#[test]
fn an_image_goes_through_both_branches_and_a_failing_node_fails_only_its_request() {
    let (store, server) = served("enable_model_api=true\nintra_op_threads=1");
    let join = guest("workflow_join");
    war(store.path(), "classify", EXAMPLE, Some(&join));
    let (status, body) = register(&server, "classify.war");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["status"],
        "Workflow classify has been registered and scaled successfully."
    );

    // The kitten: MobileNetV2's top-1 through its branch, the ASL model's guess beside it.
    let (status, answer) = json(wfpredict(&server, "classify", kitten_jpg()));
    assert_eq!(status, 200, "{answer}");
    // The branch's tabby is libtorch's, at the server's one thread, for torchvision's
    // tensor of the kitten (281 is tabby).
    let tabby = answer["mobilenet"]["tabby"].as_f64().unwrap();
    let tensor =
        wasmserve::imaging::imagenet_transform(&kitten_jpg(), wasmserve::imaging::Mode::Exact)
            .unwrap();
    let logits = libtorch_mobilenet(&tensor.to_vec::<f32>().unwrap(), 1);
    let want = wasmserve_handler::output::softmax(&logits)[281] as f64;
    assert!(
        (tabby - want).abs() <= 1e-5 * want,
        "{answer}: libtorch {want}"
    );
    assert_eq!(answer["top"]["mobilenet"], "tabby", "{answer}");
    assert!(answer["asl"]["letter"].is_string(), "{answer}");

    // Every stable ASL photo gives its letter through the ASL branch (and a
    // multipart form's `data` field is the image as well as a raw body).
    for (i, letter) in STABLE_LETTERS.chars().enumerate() {
        let photo = image(&format!("images/asl/{letter}1.jpg"));
        let resp = if i % 2 == 0 {
            wfpredict(&server, "classify", photo)
        } else {
            let (ct, body) = multipart(&[("data", photo)]);
            client()
                .post(server.url("/wfpredict/classify"))
                .header("content-type", ct)
                .body(body)
                .send()
                .unwrap()
        };
        let (status, answer) = json(resp);
        assert_eq!(status, 200, "{letter}: {answer}");
        assert_eq!(answer["top"]["asl"], letter.to_string(), "{answer}");
        assert_eq!(answer["asl"]["letter"], letter.to_string(), "{answer}");
    }

    // A sequential workflow: the ASL model, then a function node taking its letter.
    let spec = "models:\n  asl:\n    url: asl.mar\ndag:\n  asl: [letter]\n";
    war(store.path(), "spell", spec, Some(&join));
    let (status, body) = register(&server, "spell.war");
    assert_eq!(status, 200, "{body}");
    let resp = wfpredict(&server, "spell", image("images/asl/A1.jpg"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "A");

    // A node that fails fails its request, with the node's name and status.
    let (status, body) = json(wfpredict(&server, "spell", b"not an image at all".to_vec()));
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("Workflow node asl (model spell__asl) failed with status 400"),
        "{body}"
    );
    assert!(message.contains("not an image"), "{body}");
    // ...and nothing else: both workflows and their models go on serving.
    let resp = wfpredict(&server, "spell", image("images/asl/B1.jpg"));
    assert_eq!(resp.text().unwrap(), "B");
    let (status, answer) = json(wfpredict(&server, "classify", image("images/asl/C1.jpg")));
    assert_eq!((status, &answer["top"]["asl"]), (200, &json!("C")));
    let (status, answer) = json(server.post("/predictions/classify__mobilenet", kitten_jpg()));
    assert_eq!(status, 200, "{answer}");
    assert!(answer["tabby"].is_number(), "{answer}");
    // An unknown workflow is TorchServe's 404.
    let (status, body) = json(wfpredict(&server, "ghost", vec![1]));
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("WorkflowNotFoundException"))
    );
}

#[test]
fn workflows_are_registered_listed_described_and_unregistered() {
    let (store, server) = served("enable_model_api=true");
    let join = guest("workflow_join");
    war(store.path(), "classify", EXAMPLE, Some(&join));
    // Two leaves (no join): the answer is a JSON object of both, by node name; a war
    // without a handler whose nodes are all models, in torch-workflow-archiver's layout.
    let both = "models:\n  mobilenet:\n    url: mobilenet.mar\n  asl:\n    url: asl.mar\n    timeout-ms: 20000\ndag:\n  mobilenet: []\n  asl: []\n";
    raw_war(store.path(), "both", both, None);

    assert_eq!(register(&server, "classify.war").0, 200);
    let (status, body) = register(&server, "both.war");
    assert_eq!(status, 200, "{body}");
    let mut names = models(&server);
    names.sort();
    assert_eq!(
        names,
        [
            "both__asl",
            "both__mobilenet",
            "classify__asl",
            "classify__mobilenet"
        ]
    );
    let (status, answer) = json(wfpredict(&server, "both", image("images/asl/L1.jpg")));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["asl"]["letter"], "L", "{answer}");
    assert!(answer["mobilenet"].is_object(), "{answer}");

    // The same name again, and a name clashing with a workflow's model.
    let (status, body) = register(&server, "classify.war");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "Workflow classify is already registered.");
    let (status, body) = json(
        client()
            .post(server.mgmt("/workflows?url=classify.war&workflow_name=both"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 409, "{body}");

    // List (sorted, paged as TorchServe pages) and describe.
    let (status, list) = json(client().get(server.mgmt("/workflows")).send().unwrap());
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"workflows": [{"workflowName": "both", "workflowUrl": "both.war"},
                             {"workflowName": "classify", "workflowUrl": "classify.war"}]})
    );
    let (_, page) = json(
        client()
            .get(server.mgmt("/workflows?limit=1"))
            .send()
            .unwrap(),
    );
    assert_eq!(page["nextPageToken"], "1");
    assert_eq!(page["workflows"][0]["workflowName"], "both");
    let (_, page) = json(
        client()
            .get(server.mgmt("/workflows?limit=1&next_page_token=1"))
            .send()
            .unwrap(),
    );
    assert_eq!(page["workflows"][0]["workflowName"], "classify");
    assert!(page.get("nextPageToken").is_none(), "{page}");
    let (status, d) = json(
        client()
            .get(server.mgmt("/workflows/classify"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{d}");
    assert_eq!(d[0]["workflowName"], "classify");
    assert_eq!(d[0]["workflowUrl"], "classify.war");
    assert_eq!(d[0]["maxBatchDelay"], 20);
    assert_eq!(
        d[0]["workflowDag"],
        "{pre=[mobilenet, asl], mobilenet=[join], asl=[join]}"
    );
    let (status, body) = json(
        client()
            .get(server.mgmt("/workflows/ghost"))
            .send()
            .unwrap(),
    );
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("Workflow not found: ghost"))
    );

    // A workflow's model goes with its workflow, not on its own.
    let (status, body) = json(
        client()
            .delete(server.mgmt("/models/classify__asl"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("workflow classify"),
        "{body}"
    );
    let (status, body) = json(
        client()
            .delete(server.mgmt("/workflows/classify"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "Workflow \"classify\" unregistered");
    assert_eq!(models(&server), ["both__asl", "both__mobilenet"]);
    let (status, _) = json(wfpredict(&server, "classify", kitten_jpg()));
    assert_eq!(status, 404);
    // Registered again under its name, it serves again.
    assert_eq!(register(&server, "classify.war").0, 200);
    let (status, answer) = json(wfpredict(&server, "classify", image("images/asl/Y1.jpg")));
    assert_eq!(
        (status, &answer["top"]["asl"]),
        (200, &json!("Y")),
        "{answer}"
    );

    // Refusals, each with its reason, leaving nothing behind.
    let wasm = std::fs::read(&join).unwrap();
    let handler = Some(("funcs.wasm", wasm.as_slice()));
    let cases: Vec<Refusal> = vec![
        (
            "cycle",
            "models:\n  mobilenet:\n    url: mobilenet.mar\n  asl:\n    url: asl.mar\ndag:\n  pre: [mobilenet]\n  mobilenet: [asl]\n  asl: [mobilenet]\n".into(),
            handler,
            400,
            "the DAG has a cycle: nodes mobilenet, asl wait on each other",
        ),
        (
            "nohandler",
            "models:\n  asl:\n    url: asl.mar\ndag:\n  pre: [asl]\n  asl: [join]\n".into(),
            None,
            400,
            "the nodes pre, join are not models under models:",
        ),
        (
            "badyaml",
            "models:\n  asl:\n    url: [asl.mar\ndag: {}\n".into(),
            handler,
            400,
            "not valid YAML",
        ),
        (
            "ghostmar",
            "models:\n  asl:\n    url: ghost.mar\ndag:\n  asl: [letter]\n".into(),
            handler,
            404,
            "ghost.mar (the .mar of workflow node asl, in neither the workflow archive nor the model store)",
        ),
        (
            "unused",
            "models:\n  asl:\n    url: asl.mar\n  mobilenet:\n    url: mobilenet.mar\ndag:\n  asl: [letter]\n".into(),
            handler,
            400,
            "model mobilenet is declared under models: but is no node of the dag",
        ),
        (
            "python",
            EXAMPLE.into(),
            Some(("workflow_handler.py", b"def pre(data, context):\n    return data\n")),
            400,
            "is a TorchServe Python handler",
        ),
    ];
    for (name, spec, handler, want, needle) in cases {
        raw_war(store.path(), name, &spec, handler);
        let (status, body) = register(&server, &format!("{name}.war"));
        assert_eq!(status, want, "{name}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{name}: {body}"
        );
        let (status, _) = json(
            client()
                .get(server.mgmt(&format!("/workflows/{name}")))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 404, "{name}");
    }
    let (status, body) = register(&server, "absent.war");
    assert_eq!(status, 404, "{body}");
    let mut names = models(&server);
    names.sort();
    assert_eq!(
        names,
        [
            "both__asl",
            "both__mobilenet",
            "classify__asl",
            "classify__mobilenet"
        ]
    );
}

#[test]
fn the_archiver_checks_and_the_model_api_gates_registration() {
    let store = ModelStore::new();
    let join = guest("workflow_join");
    // The archiver refuses what a server would.
    let out = workflow_archive(
        store.path(),
        "loop",
        "dag:\n  a: [b]\n  b: [a]\n",
        Some(&join),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cycle"));
    let out = workflow_archive(store.path(), "nofn", "dag:\n  a: [b]\n", None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("are not models under models:"));
    let out = workflow_archive(
        store.path(),
        "handlerworld",
        "dag:\n  a: [b]\n",
        Some(&guest("asl_handler")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("`pipeline` component"),
        "{err}"
    );
    let py = store.path().join("funcs.py");
    std::fs::write(&py, "def a(data, context):\n    return data\n").unwrap();
    let out = workflow_archive(store.path(), "py", "dag:\n  a: [b]\n", Some(&py));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("TorchServe Python handler"),
        "{err}"
    );
    // A good one, and its manifest in torch-workflow-archiver's words.
    let path = war(store.path(), "fn", "dag:\n  pre: [letter]\n", Some(&join));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_reader(zip.by_name("WAR-INF/MANIFEST.json").unwrap()).unwrap();
    assert_eq!(manifest["workflow"]["workflowName"], "fn");
    assert_eq!(manifest["workflow"]["specFile"], "fn.yaml");
    assert_eq!(manifest["workflow"]["handler"], "workflow_join.wasm");
    assert!(manifest["createdOn"].is_string() && manifest["archiverVersion"].is_string());

    // Without the model API, registration and unregistration are refused.
    let server = Server::start(store.path(), &[], "");
    let (status, body) = register(&server, "fn.war");
    assert_eq!(status, 405, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("enable-model-api"),
        "{body}"
    );
    let (status, _) = json(
        client()
            .delete(server.mgmt("/workflows/fn"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 405);
    let (status, list) = json(client().get(server.mgmt("/workflows")).send().unwrap());
    assert_eq!((status, list), (200, json!({"workflows": []})));
}
