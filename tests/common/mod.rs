//! What the end-to-end tests share: the real `wasmserve` binary on an ephemeral port,
//! a temporary model store, the shared assets and the built handler components.
#![allow(dead_code)]

pub mod clients;
pub mod keepalive;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasmserve"))
}

/// `../shared/assets`, or `WASMSERVE_ASSETS`.
pub fn assets() -> PathBuf {
    std::env::var_os("WASMSERVE_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/assets"))
}

pub fn asset(rel: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(
        p.is_file(),
        "missing asset {} (set WASMSERVE_ASSETS)",
        p.display()
    );
    p
}

/// A handler component built from this workspace (`examples/` or `handlers/`).
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("WASMSERVE_GUEST_DIR")).join(format!("{name}.wasm"))
}

/// Runs `wasmserve` with `args` and returns its output.
pub fn wasmserve(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("running wasmserve")
}

/// A temporary model store.
pub struct ModelStore {
    pub dir: tempfile::TempDir,
}

impl ModelStore {
    pub fn new() -> ModelStore {
        ModelStore {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `wasmserve archive` into this store; panics with its stderr when it fails.
    pub fn archive(&self, name: &str, model: &Path, handler: &str, extra: &[&Path]) -> PathBuf {
        self.archive_with_config(name, model, handler, extra, None)
    }

    /// Like [`Self::archive`], with `yaml` as the archive's `model-config.yaml`.
    pub fn archive_with_config(
        &self,
        name: &str,
        model: &Path,
        handler: &str,
        extra: &[&Path],
        yaml: Option<&str>,
    ) -> PathBuf {
        let out = self.try_archive(name, model, handler, extra, yaml);
        assert!(
            out.status.success(),
            "archive failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.path().join(format!("{name}.mar"))
    }

    /// `wasmserve archive` as [`Self::archive_with_config`] runs it, whatever comes of
    /// it: for tests of what it refuses.
    pub fn try_archive(
        &self,
        name: &str,
        model: &Path,
        handler: &str,
        extra: &[&Path],
        yaml: Option<&str>,
    ) -> Output {
        let mut args: Vec<String> = vec![
            "archive".into(),
            "--model-name".into(),
            name.into(),
            "-v".into(),
            "1.0".into(),
            "--serialized-file".into(),
            model.display().to_string(),
            "--handler".into(),
            handler.into(),
            "--export-path".into(),
            self.path().display().to_string(),
        ];
        if !extra.is_empty() {
            args.push("--extra-files".into());
            args.push(
                extra
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let yaml_dir = tempfile::tempdir().unwrap();
        if let Some(yaml) = yaml {
            let path = yaml_dir.path().join("model-config.yaml");
            std::fs::write(&path, yaml).unwrap();
            args.push("--config-file".into());
            args.push(path.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wasmserve(&args)
    }

    /// `wasmserve start` arguments that restore this store's newest snapshot: the store
    /// and its `logs` folder, no `--ts-config`, no `--models`.
    pub fn restore_args(&self) -> Vec<String> {
        vec![
            "--model-store".into(),
            self.path().display().to_string(),
            "--log-dir".into(),
            self.path().join("logs").display().to_string(),
        ]
    }

    /// The streaming example over vit4mnist (`examples/stream_classifier`, `transform:
    /// mnist`, top 3), served as `streamer`: one answer streamed per digit of a form.
    pub fn digit_streamer(&self) -> PathBuf {
        self.archive_with_config(
            "streamer",
            &asset("models/vit4mnist.ptl"),
            guest("stream_classifier").to_str().unwrap(),
            &[],
            Some("transform: mnist\ntopk: 3\n"),
        )
    }

    /// The ImageNet classifier archive most tests use.
    pub fn mobilenet(&self) -> PathBuf {
        self.mobilenet_with_config(None)
    }

    /// [`ModelStore::mobilenet`] with a `model-config.yaml`.
    pub fn mobilenet_with_config(&self, yaml: Option<&str>) -> PathBuf {
        self.archive_with_config(
            "mobilenet",
            &asset("models/mobilenet_v2_quantized.pt"),
            "image_classifier",
            &[&asset("images/index_to_name.json")],
            yaml,
        )
    }

    /// vit4mnist with the `mnist_handler` example, as `mnist.mar`.
    pub fn mnist(&self) -> PathBuf {
        self.archive(
            "mnist",
            &asset("models/vit4mnist.ptl"),
            guest("mnist_handler").to_str().unwrap(),
            &[],
        )
    }

    /// A pipeline archive `name.mar`: the component `guest` with `yaml` as its
    /// model-config.yaml (its `models:` say what it may call), no model of its own.
    pub fn pipeline(&self, name: &str, guest_name: &str, yaml: &str) -> PathBuf {
        let config = self.path().join(format!("{name}-config.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let out = wasmserve(&[
            "archive",
            "--model-name",
            name,
            "-v",
            "1.0",
            "--handler",
            guest(guest_name).to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
            "--export-path",
            self.path().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.path().join(format!("{name}.mar"))
    }
}

/// A server over `store` serving `models`, with token authorization on (the default)
/// and its keys in `store/key_file.json`: the server and the key file.
pub fn start_with_keys(store: &ModelStore, models: &[&str]) -> (Server, PathBuf) {
    let key_file = store.path().join("key_file.json");
    let cfg = store.path().join("auth.properties");
    std::fs::write(
        &cfg,
        format!(
            "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\n\
             metrics_address=http://127.0.0.1:0\nkey_file={}\n",
            key_file.display()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec![
        "--model-store".into(),
        store.path().display().to_string(),
        "--ts-config".into(),
        cfg.display().to_string(),
        "--log-dir".into(),
        store.path().join("logs").display().to_string(),
        "--models".into(),
    ];
    args.extend(models.iter().map(|m| m.to_string()));
    (Server::spawn_with_auth(&args, &[]), key_file)
}

/// The keys of a key file (`key_file.json`).
pub fn keys(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A `multipart/form-data` body of `fields` (name, file): its content type and bytes.
pub fn multipart<N: AsRef<str>>(fields: &[(N, Vec<u8>)]) -> (String, Vec<u8>) {
    use std::io::Write as _;
    let boundary = "wasmserve-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, data) in fields {
        let name = name.as_ref();
        write!(
            body,
            "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .unwrap();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The `--set` values that put both gRPC ports on ephemeral ports (the defaults,
/// 7070 and 7071, would collide between tests running at once); the same lines go
/// into the config files of servers started without [`Server`].
pub const GRPC_EPHEMERAL: [&str; 2] = ["grpc_inference_port=0", "grpc_management_port=0"];

/// `host:port` of an announced `grpc://` or `grpcs://` address.
fn host_port(url: &str) -> String {
    url.split("://").nth(1).unwrap_or(url).to_string()
}

/// A `wasmserve start --foreground` child on an ephemeral port, stopped on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` of the inference API.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the management API.
    pub management: String,
    /// `127.0.0.1:PORT` of the gRPC inference port (TorchServe's and KServe's
    /// services), and of the gRPC management port.
    pub grpc: String,
    pub grpc_management: String,
    /// `http://127.0.0.1:PORT` of the metrics API, once announced.
    metrics: Option<String>,
    log: Arc<Mutex<String>>,
    /// Everything the server printed on stdout so far.
    printed: Arc<Mutex<String>>,
    /// Announcements of the APIs not yet consumed (the metrics API comes last).
    rx: mpsc::Receiver<(&'static str, String)>,
}

impl Server {
    /// Starts the server over `store` with `--models models…` and extra config lines.
    pub fn start(store: &Path, models: &[&str], config: &str) -> Server {
        Server::start_with_env(store, models, config, &[])
    }

    /// Like [`Server::start`], with extra environment variables (e.g. `WASMSERVE_LOG`).
    pub fn start_with_env(
        store: &Path,
        models: &[&str],
        config: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let cfg = store.join(format!("config-{}.properties", std::process::id()));
        std::fs::write(
            &cfg,
            format!("inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nmetrics_address=http://127.0.0.1:0\n{config}\n"),
        )
        .unwrap();
        let mut args: Vec<String> = vec!["--model-store".into(), store.display().to_string()];
        args.extend(["--ts-config".into(), cfg.display().to_string()]);
        args.extend(["--log-dir".into(), store.join("logs").display().to_string()]);
        if !models.is_empty() {
            args.push("--models".into());
            args.extend(models.iter().map(|m| m.to_string()));
        }
        Server::spawn(&args, env)
    }

    /// `wasmserve start --foreground --disable-token-auth ARGS…`; waits until both APIs
    /// listen. Token authorization has its own tests ([`Server::spawn_with_auth`]).
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Server {
        let mut all = vec!["--disable-token-auth".to_string()];
        all.extend_from_slice(args);
        Server::spawn_with_auth(&all, env)
    }

    /// `wasmserve start --foreground ARGS…` (token authorization as ARGS say); waits
    /// until both APIs listen.
    /// The gRPC ports are ephemeral too (`--set`), unless ARGS set them.
    pub fn spawn_with_auth(args: &[String], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args(["start", "--foreground"]).args(args);
        if !args.iter().any(|a| a.starts_with("grpc_")) {
            cmd.args(GRPC_EPHEMERAL.iter().flat_map(|kv| ["--set", kv]));
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wasmserve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let printed = Arc::new(Mutex::new(String::new()));
        let out_sink = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                {
                    let mut out = out_sink.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
                for api in [
                    "inference",
                    "management",
                    "metrics",
                    "gRPC inference",
                    "gRPC management",
                ] {
                    if let Some(url) = line.strip_prefix(&format!("wasmserve: {api} API on ")) {
                        let _ = tx.send((api, url.to_string()));
                    }
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (mut base, mut management) = (String::new(), String::new());
        let (mut grpc, mut grpc_management) = (String::new(), String::new());
        let mut metrics = None;
        while base.is_empty()
            || management.is_empty()
            || grpc.is_empty()
            || grpc_management.is_empty()
        {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(("inference", url)) => base = url,
                Ok(("metrics", url)) => metrics = Some(url),
                Ok(("gRPC inference", url)) => grpc = host_port(&url),
                Ok(("gRPC management", url)) => grpc_management = host_port(&url),
                Ok((_, url)) => management = url,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "the server did not come up; its log:\n{}",
                        log.lock().unwrap()
                    );
                }
            }
        }
        Server {
            child,
            base,
            management,
            grpc,
            grpc_management,
            metrics,
            log,
            printed,
            rx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A URL on the management API.
    pub fn mgmt(&self, path: &str) -> String {
        format!("{}{path}", self.management)
    }

    /// A URL on the metrics API (waits for its announcement).
    pub fn metrics_url(&mut self, path: &str) -> String {
        while self.metrics.is_none() {
            match self.rx.recv_timeout(Duration::from_secs(30)) {
                Ok(("metrics", url)) => self.metrics = Some(url),
                Ok(_) => {}
                Err(_) => panic!(
                    "the server announced no metrics API; its log:\n{}",
                    self.log()
                ),
            }
        }
        format!("{}{path}", self.metrics.as_deref().unwrap())
    }

    /// The value of `name` for `model` on the metrics API (0 when it has none yet).
    pub fn metric(&mut self, name: &str, model: &str) -> f64 {
        let text = client()
            .get(self.metrics_url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        wasmserve::metrics::sample(&text, name, &format!("model_name=\"{model}\""))
            .unwrap_or_default()
    }

    /// Whether the server printed `text` on stdout.
    pub fn stdout_has(&self, text: &str) -> bool {
        self.printed.lock().unwrap().contains(text)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether `text` appears on stderr within `timeout` (log lines are written
    /// asynchronously: poll, never sleep a guessed time).
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.log().contains(text) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POSTs `body` as the raw request body.
    /// The management API's `describe` of `model`'s default version (asserts a 200).
    pub fn describe(&self, model: &str) -> serde_json::Value {
        let (status, body) = json(
            client()
                .get(self.mgmt(&format!("/models/{model}")))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 200, "{body}");
        body[0].clone()
    }

    pub fn post(&self, path: &str, body: Vec<u8>) -> reqwest::blocking::Response {
        client()
            .post(self.url(path))
            .body(body)
            .send()
            .expect("request")
    }

    /// Asks the server to stop (SIGTERM) and waits for its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The JSON body of a response, with its status.
pub fn json(resp: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// Saves a TorchScript module traced from `f` on `inputs` as `dir/name` (its `forward`).
pub fn traced_model(
    dir: &Path,
    name: &str,
    inputs: &[tch::Tensor],
    mut f: impl FnMut(&[tch::Tensor]) -> Vec<tch::Tensor>,
) -> PathBuf {
    let module = tch::CModule::create_by_tracing("Model", "forward", inputs, &mut f).unwrap();
    let path = dir.join(name);
    module.save(&path).unwrap();
    path
}

/// Saves a TorchScript module whose `forward` is `forward` (TorchScript source, indented
/// by four spaces, `self` first) as `dir/name`: the archive layout `torch.jit.save`
/// writes, for models that tracing cannot express (dict, list or tuple outputs).
pub fn scripted_model(dir: &Path, name: &str, forward: &str) -> PathBuf {
    let code =
        format!("class Model(Module):\n  __parameters__ = []\n  __buffers__ = []\n{forward}\n");
    // A module object of class __torch__.Model with no state (pickle protocol 2).
    torchscript_file(
        dir,
        name,
        &code,
        b"\x80\x02c__torch__\nModel\nq\x00)\x81}(ubq\x01.",
    )
}

/// Saves `dir/name` in `torch.jit.save`'s layout: `code` as the source of
/// `__torch__` (its class `Model`), `data_pkl` as the pickled module object, no
/// constants.
pub fn torchscript_file(dir: &Path, name: &str, code: &str, data_pkl: &[u8]) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let files: [(&str, &[u8]); 5] = [
        ("model/data.pkl", data_pkl),
        ("model/constants.pkl", b"\x80\x02)."),
        ("model/code/__torch__.py", code.as_bytes()),
        ("model/version", b"3\n"),
        ("model/byteorder", b"little"),
    ];
    for (file, bytes) in files {
        zip.start_file(file, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// The median time of `runs` calls of `f`, after `warmup` calls (for the benchmarks).
pub fn median_time(warmup: usize, runs: usize, mut f: impl FnMut()) -> std::time::Duration {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<std::time::Duration> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

// Helpers of the attack and endurance tests (tests/security.rs, tests/soak.rs).

/// The kitten photo (`images/kitten.jpg`).
pub fn kitten_jpg() -> Vec<u8> {
    std::fs::read(asset("images/kitten.jpg")).unwrap()
}

/// A TorchScript model that doubles its float32 `[N, 1]` input, saved as `dir/double.pt`:
/// for handlers whose forward does not matter.
pub fn doubling_model(dir: &Path) -> PathBuf {
    traced_model(
        dir,
        "double.pt",
        &[tch::Tensor::ones(
            [1, 1],
            (tch::Kind::Float, tch::Device::Cpu),
        )],
        |x| vec![&x[0] * 2],
    )
}

impl ModelStore {
    /// The hostile test handler (`tests/guests/hostile`) on [`doubling_model`], archived
    /// as `NAME.mar` with `yaml` as its `model-config.yaml`. The model file is made in a
    /// folder of its own, so that the store holds only archives.
    pub fn hostile(&self, name: &str, yaml: &str) -> PathBuf {
        let dir = tempfile::tempdir().unwrap();
        let model = doubling_model(dir.path());
        self.archive_with_config(
            name,
            &model,
            guest("hostile_handler").to_str().unwrap(),
            &[],
            Some(yaml),
        )
    }
}

/// Sends `command` (text/plain) to the hostile handler served as `model`; its status and
/// JSON answer.
pub fn hostile_command(server: &Server, model: &str, command: &str) -> (u16, serde_json::Value) {
    json(
        client()
            .post(server.url(&format!("/predictions/{model}")))
            .header("content-type", "text/plain")
            .body(command.to_string())
            .send()
            .unwrap(),
    )
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// [`vm_rss_kib`] in MiB.
pub fn vm_rss_mib(pid: u32) -> f64 {
    vm_rss_kib(pid) as f64 / 1024.0
}

/// What a sandbox's `init` is told in benchmarks: model `bench` 1.0, an empty manifest,
/// `config` as the handler's config, batch 1, CPU.
pub fn bench_context(config: &str) -> wasmserve::sandbox::Context {
    wasmserve::sandbox::Context {
        model_name: "bench".into(),
        model_version: "1.0".into(),
        manifest: "{}".into(),
        config: config.into(),
        batch_size: 1,
        device: "cpu".into(),
    }
}

/// A built-in handler compiled in a runtime with the default limits, and a sandbox over
/// `model_dir`. The runtime is returned too: its epoch ticker stops when it is dropped.
pub fn builtin_sandbox(
    name: &str,
    model_dir: &Path,
) -> (
    wasmserve::sandbox::HandlerRuntime,
    wasmserve::sandbox::HandlerComponent,
    wasmserve::sandbox::Sandbox,
) {
    use wasmserve::sandbox::{HandlerRuntime, Limits, Sandbox};
    let runtime = HandlerRuntime::new(Limits::default(), None).unwrap();
    let component = runtime
        .compile(wasmserve::builtin::component(name).unwrap())
        .unwrap();
    let sandbox = Sandbox::new(model_dir.to_path_buf(), bench_context("{}"));
    (runtime, component, sandbox)
}

/// A request whose one part, `body`, is `data` (a raw POST body, as the host hands it
/// to a handler).
pub fn body_request(data: Vec<u8>) -> wasmserve::sandbox::Request {
    wasmserve::sandbox::Request {
        id: "bench".into(),
        headers: vec![],
        parts: vec![wasmserve::sandbox::Part {
            name: "body".into(),
            content_type: None,
            data,
        }],
    }
}

// Helpers of the KServe v2 tests (tests/kserve.rs, tests/clients.rs, bench/v2.rs).

/// The mobilenet archive's tensors declared with Triton's keys (`model-config.yaml`).
pub const MOBILENET_TENSORS: &str = "input:\n  - name: input__0\n    data_type: TYPE_FP32\n    dims: [3, 224, 224]\noutput:\n  - name: output__0\n    data_type: TYPE_FP32\n    dims: [1000]\n";

/// A deterministic `[1, 3, 224, 224]` input in ImageNet's normalized range.
pub fn v2_input_values() -> Vec<f32> {
    (0..3 * 224 * 224)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// MobileNetV2's outputs for a `[1, 3, 224, 224]` input, run in this process on a
/// thread of its own at `threads` libtorch intra-op threads (as a lane runs).
pub fn libtorch_mobilenet(values: &[f32], threads: usize) -> Vec<f32> {
    let x = tch::Tensor::from_slice(values).view([1, 3, 224, 224]);
    std::thread::scope(|s| {
        s.spawn(|| {
            tch::set_num_threads(threads as i32);
            let mut model = tch::CModule::load(asset("models/mobilenet_v2_quantized.pt")).unwrap();
            model.set_eval();
            let out = tch::no_grad(|| model.forward_ts(&[x])).unwrap();
            Vec::<f32>::try_from(out.view([-1])).unwrap()
        })
        .join()
        .unwrap()
    })
}

/// The mobilenet archive with its tensors declared, served with its lanes at
/// `threads` intra-op threads.
pub fn mobilenet_v2_server(store: &ModelStore, threads: usize, config: &str) -> Server {
    store.mobilenet_with_config(Some(MOBILENET_TENSORS));
    Server::start(
        store.path(),
        &["mobilenet=mobilenet.mar"],
        &format!("intra_op_threads={threads}\n{config}"),
    )
}

/// The MNIST digit files of `number`, side by side in one grey PNG, each scaled by
/// `scale`.
pub fn written_number(number: &str, scale: u32) -> Vec<u8> {
    let side = 28 * scale;
    let mut canvas = image::GrayImage::new(side * number.len() as u32, side);
    for (i, d) in number.chars().enumerate() {
        let png = std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap();
        let digit = image::load_from_memory(&png).unwrap().to_luma8();
        let digit =
            image::imageops::resize(&digit, side, side, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut canvas, &digit, (i as u32 * side) as i64, 0);
    }
    let mut png = Vec::new();
    canvas
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// The MNIST digit files of `number` as vit4mnist's float32 `[N, 1, 28, 28]` input,
/// `(x / 255 - 0.1307) / 0.3081`, as the MNIST handler and pipeline make it.
pub fn mnist_batch(number: &str) -> Vec<f32> {
    let mut values = Vec::new();
    for d in number.chars() {
        let png = std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (28, 28));
        values.extend(
            img.pixels()
                .map(|p| (p.0[0] as f32 / 255.0 - 0.1307) / 0.3081),
        );
    }
    values
}
