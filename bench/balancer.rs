//! Three replicas behind a real load balancer (`make balancer`; about two minutes):
//! HAProxy from Debian in front of three `wasmserve` processes that share one model
//! store in KServe's layout (`config/config.properties` with `load_models=all`,
//! `model-store/*.mar`), under a closed-loop load at concurrency 16, through:
//!
//! 1. **steady**: the three replicas;
//! 2. **kill**: one replica is sent SIGTERM (what `kill`, `podman stop` and Kubernetes
//!    send), and once it has exited a new one is started on its port;
//! 3. **rolling**: the same for each of the three in turn, the next only once HAProxy
//!    routes to the new one;
//! 4. **steady again**.
//!
//! HAProxy checks `GET /v2/health/ready` every 200 ms (down after 2 failures, up after 2
//! successes), so a replica that is starting (listening, its models not loaded) gets no
//! request. It retries on `conn-failure` and `empty-response` only: a request refused
//! by a stopped listener, or one sent on a keep-alive connection that the stopping
//! replica closed without reading it: requests that never reached a handler. (A replica
//! that is killed with SIGKILL loses what it had in flight; HAProxy's `empty-response`
//! would resend those too, which a retry policy for predictions may allow, but this run
//! does not do that.) It sets `x-request-id` where the client sent none.
//!
//! What the run checks, and exits non-zero on:
//! - no request failed (anything but 200 with the kitten's class first);
//! - each request's `x-request-id` came back: the client's own on half the requests,
//!   HAProxy's on the other half; and each is in the access log of the replica that
//!   answered it (the balancer's header was what the replica logged);
//! - no replica answered a prediction that reached it before its first 200 to a
//!   readiness check (from each replica process's own access log);
//! - no request is in two replicas' access logs: none was retried after it had reached
//!   a handler;
//! - Prometheus (Debian's) scraping the three replicas' metrics ports with the config
//!   this writes (`promtool check config` first, and on `deploy/prometheus/`): every
//!   target up at the end, each with samples, the predictions counted per replica.
//!
//! Prints, per phase: requests, failures, HAProxy's retries, throughput, p50 and p99, and
//! the requests each replica answered. Loopback only; the run is bounded (each phase in
//! seconds, each wait with a deadline). Needs `haproxy` and `prometheus` on PATH
//! (`make balancer` installs them with apt where it can).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;

const CONCURRENCY: usize = 16;
const REPLICAS: usize = 3;
const STEADY: Duration = Duration::from_secs(15);
/// After a replica is back in rotation, before the phase ends.
const SETTLE: Duration = Duration::from_secs(3);
/// How long a replica may take to exit on SIGTERM, and to be routed to after it starts.
const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One replica: a fixed port (HAProxy's server line), a process per generation, each
/// generation with its own log folder.
struct Replica {
    name: String,
    port: u16,
    metrics_port: u16,
    child: Option<Child>,
    logs: Vec<PathBuf>,
}

impl Replica {
    fn start(&mut self, config: &Path, dir: &Path) {
        let logs = dir.join(format!("{}-{}", self.name, self.logs.len()));
        let child = Command::new(bin())
            .args(["start", "--foreground", "--ts-config"])
            .arg(config)
            .arg("--log-dir")
            .arg(&logs)
            .args([
                "--set",
                &format!("inference_address=http://127.0.0.1:{}", self.port),
            ])
            .args(["--set", "management_address=http://127.0.0.1:0"])
            .args([
                "--set",
                &format!("metrics_address=http://127.0.0.1:{}", self.metrics_port),
            ])
            .args([
                "--set",
                "grpc_inference_port=0",
                "--set",
                "grpc_management_port=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting wasmserve");
        self.logs.push(logs);
        self.child = Some(child);
    }

    /// SIGTERM, then waits for the process to exit.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("a running replica");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status} on SIGTERM",
                    self.name
                );
                return;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process killed when dropped (HAProxy, Prometheus).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_config(front: u16, stats: u16, replicas: &[Replica]) -> String {
    let mut servers = String::new();
    for r in replicas {
        writeln!(servers, "  server {} 127.0.0.1:{} check", r.name, r.port).unwrap();
    }
    format!(
        "global
  log stdout format raw local0
  maxconn 1024
  # Room for the whole request in HAProxy's buffer: a request can only be retried
  # while HAProxy still holds it.
  tune.bufsize 262144

defaults
  mode http
  log global
  log-format \"%s %ST %rc %Ta %hr\"
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 10s
  # Retries only for requests that never reached a handler: a refused connection, and a
  # keep-alive connection the server closed before reading the request.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response

frontend inference
  bind 127.0.0.1:{front}
  unique-id-format %[uuid()]
  http-request set-header x-request-id %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
  http-request capture req.hdr(x-request-id) len 80
  default_backend wasmserve

backend wasmserve
  balance leastconn
  option httpchk GET /v2/health/ready
  http-check expect status 200
  default-server inter 200ms fall 2 rise 2
  http-response set-header x-replica %s
{servers}
listen stats
  bind 127.0.0.1:{stats}
  stats enable
  stats uri /stats
"
    )
}

/// HAProxy's view of each server: `UP`, `DOWN`, `DOWN 1/2`, ...
fn haproxy_states(stats: u16) -> HashMap<String, String> {
    let Ok(resp) = client()
        .get(format!("http://127.0.0.1:{stats}/stats;csv"))
        .send()
    else {
        return HashMap::new();
    };
    let text = resp.text().unwrap_or_default();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return HashMap::new();
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > st && f[px] == "wasmserve")
        .map(|f| (f[sv].to_string(), f[st].to_string()))
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request of the load.
struct Sample {
    /// When it was sent, since the run's start.
    sent: Duration,
    latency: Duration,
    /// `None` when it succeeded; what went wrong otherwise.
    failure: Option<String>,
    replica: String,
    /// The `x-request-id` it carried (the client's, or the one HAProxy gave it).
    id: String,
}

fn load(
    url: String,
    body: Arc<Vec<u8>>,
    worker: usize,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // Half the requests carry the client's own id; HAProxy gives the rest one.
        let own = n.is_multiple_of(2).then(|| format!("lb-{worker}-{n}"));
        let mut req = client.post(&url).body(body.to_vec());
        if let Some(id) = &own {
            req = req.header("x-request-id", id);
        }
        let sent = t0.elapsed();
        let start = Instant::now();
        let result = req.send().and_then(|r| {
            let status = r.status().as_u16();
            let header = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (id, replica) = (header("x-request-id"), header("x-replica"));
            r.text().map(|t| (status, id, replica, t))
        });
        let latency = start.elapsed();
        let (failure, replica, id) = match result {
            Err(e) => (
                Some(format!("transport: {e}")),
                String::new(),
                String::new(),
            ),
            Ok((status, id, replica, text)) => {
                let top = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()));
                let failure = if status != 200 {
                    Some(format!("{status}: {text:.200}"))
                } else if top.as_deref() != Some("tabby") {
                    Some(format!("wrong answer: {text:.200}"))
                } else if id.is_empty() {
                    Some("no x-request-id in the answer".into())
                } else if own.as_ref().is_some_and(|o| *o != id) {
                    Some(format!("sent x-request-id {own:?}, got {id}"))
                } else {
                    None
                };
                (failure, replica, id)
            }
        };
        out.push(Sample {
            sent,
            latency,
            failure,
            replica,
            id,
        });
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A line of a replica's access log: `TIME CLIENT "METHOD PATH HTTP/V" STATUS LATus
/// request_id=ID ...`: (completed at, latency, method and path, status, id).
struct Access {
    at: SystemTime,
    latency: Duration,
    request: String,
    status: u16,
    id: String,
}

fn parse_time(text: &str) -> Option<SystemTime> {
    // 2026-12-02T22:07:58.966291Z (UTC, as the server writes it)
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (y, m, day) = (d[0], d[1], d[2]);
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + t[0] * 3600 + t[1] * 60 + t[2];
    let micros: u64 = format!("{frac:0<6}")[..6].parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_micros(micros))
}

fn access_log(dir: &Path) -> Vec<Access> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("access_log") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let mut quoted = line.splitn(3, '"');
            let (Some(head), Some(request), Some(rest)) =
                (quoted.next(), quoted.next(), quoted.next())
            else {
                continue;
            };
            let mut rest = rest.split_whitespace();
            let status = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let latency = rest
                .next()
                .and_then(|s| s.strip_suffix("us")?.parse().ok())
                .map(Duration::from_micros)
                .unwrap_or_default();
            let id = rest
                .find_map(|f| f.strip_prefix("request_id="))
                .unwrap_or("")
                .to_string();
            let Some(at) = head.split_whitespace().next().and_then(parse_time) else {
                continue;
            };
            out.push(Access {
                at,
                latency,
                request: request.to_string(),
                status,
                id,
            });
        }
    }
    out
}

struct Phase {
    name: &'static str,
    start: Duration,
    end: Duration,
}

fn query(prom: u16, q: &str) -> serde_json::Value {
    let resp = client()
        .get(format!("http://127.0.0.1:{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .unwrap();
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].clone()
}

fn must_run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    for tool in ["haproxy", "prometheus", "promtool"] {
        if Command::new(tool).arg("--version").output().is_err()
            && Command::new(tool).arg("-v").output().is_err()
        {
            panic!(
                "{tool} is not on PATH: `make balancer` installs it (Debian: haproxy, prometheus)"
            );
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("wasmserve-balancer-")
        .tempdir()
        .unwrap();
    let root = dir.path();

    // ---- the shared model store, in KServe's TorchServe layout ---------------------
    let store = root.join("models");
    std::fs::create_dir_all(store.join("config")).unwrap();
    std::fs::create_dir_all(store.join("model-store")).unwrap();
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
        "--export-path",
        store.join("model-store").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = store.join("config/config.properties");
    std::fs::write(
        &config,
        format!(
            "model_store={}\nload_models=all\ndisable_token_authorization=true\n\
             default_workers_per_model=1\nintra_op_threads=1\n",
            store.join("model-store").display()
        ),
    )
    .unwrap();

    // ---- the replicas, HAProxy and Prometheus ---------------------------------------
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|i| Replica {
            name: format!("r{i}"),
            port: free_port(),
            metrics_port: free_port(),
            child: None,
            logs: Vec::new(),
        })
        .collect();
    for r in &mut replicas {
        r.start(&config, root);
    }
    for r in &replicas {
        let url = format!("http://127.0.0.1:{}/v2/health/ready", r.port);
        wait_until(&format!("{} to be ready", r.name), || {
            client().get(&url).send().is_ok_and(|r| r.status() == 200)
        });
    }

    let (front, stats) = (free_port(), free_port());
    let haproxy_cfg = root.join("haproxy.cfg");
    std::fs::write(&haproxy_cfg, haproxy_config(front, stats, &replicas)).unwrap();
    must_run(
        Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&haproxy_cfg),
        "haproxy -c",
    );
    let haproxy_log = root.join("haproxy.log");
    let _haproxy = Daemon(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&haproxy_cfg)
            .stdout(std::fs::File::create(&haproxy_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting haproxy"),
    );
    wait_until("HAProxy to route to every replica", || {
        let s = haproxy_states(stats);
        replicas
            .iter()
            .all(|r| s.get(&r.name).is_some_and(|st| st == "UP"))
    });

    let prom_port = free_port();
    let prom_cfg = root.join("prometheus.yml");
    let targets: Vec<String> = replicas
        .iter()
        .map(|r| {
            format!(
                "      - targets: [\"127.0.0.1:{}\"]\n        labels: {{replica: {}}}\n",
                r.metrics_port, r.name
            )
        })
        .collect();
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wasmserve\n    metrics_path: /metrics\n    static_configs:\n{}",
            targets.concat()
        ),
    )
    .unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/prometheus.yml");
    for cfg in [&prom_cfg, &shipped] {
        must_run(
            Command::new("promtool").args(["check", "config"]).arg(cfg),
            &format!("promtool check config {}", cfg.display()),
        );
    }
    let _prometheus = Daemon(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus"),
    );

    // ---- the load, and the phases under it ------------------------------------------
    let body = Arc::new(std::fs::read(asset("images/kitten.jpg")).unwrap());
    let url = format!("http://127.0.0.1:{front}/predictions/mobilenet");
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (url, body, stop) = (url.clone(), body.clone(), stop.clone());
            std::thread::spawn(move || load(url, body, w, t0, stop))
        })
        .collect();
    let mut phases = Vec::new();
    let replaced = Arc::new(Mutex::new(Vec::<String>::new()));
    let restart = |r: &mut Replica| {
        r.stop();
        r.start(&config, root);
        wait_until(&format!("HAProxy to route to the new {}", r.name), || {
            haproxy_states(stats)
                .get(&r.name)
                .is_some_and(|s| s == "UP")
        });
        replaced.lock().unwrap().push(r.name.clone());
    };

    let start = t0.elapsed();
    std::thread::sleep(STEADY);
    phases.push(Phase {
        name: "steady, 3 replicas",
        start,
        end: t0.elapsed(),
    });

    let start = t0.elapsed();
    restart(&mut replicas[1]);
    std::thread::sleep(SETTLE);
    phases.push(Phase {
        name: "kill r1 (SIGTERM), start a new r1",
        start,
        end: t0.elapsed(),
    });

    let start = t0.elapsed();
    for r in replicas.iter_mut() {
        restart(r);
    }
    std::thread::sleep(SETTLE);
    phases.push(Phase {
        name: "rolling restart r0, r1, r2",
        start,
        end: t0.elapsed(),
    });

    let start = t0.elapsed();
    std::thread::sleep(STEADY);
    phases.push(Phase {
        name: "steady, 3 new replicas",
        start,
        end: t0.elapsed(),
    });
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<Sample> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let run = t0.elapsed();

    // ---- Prometheus's view, before the replicas stop -------------------------------
    std::thread::sleep(Duration::from_secs(2));
    let up = query(prom_port, "up{job=\"wasmserve\"}");
    let scraped = query(prom_port, "scrape_samples_scraped{job=\"wasmserve\"}");
    let counted = query(
        prom_port,
        "sum by (replica) (ts_inference_requests_total{job=\"wasmserve\"})",
    );
    for r in replicas.iter_mut() {
        r.stop();
    }

    // ---- what happened -----------------------------------------------------------------
    let mut problems: Vec<String> = Vec::new();
    let failures: Vec<&Sample> = samples.iter().filter(|s| s.failure.is_some()).collect();
    for s in failures.iter().take(10) {
        problems.push(format!(
            "request at {:.2} s failed: {}",
            s.sent.as_secs_f64(),
            s.failure.as_deref().unwrap()
        ));
    }
    if failures.len() > 10 {
        problems.push(format!("... {} failed requests in all", failures.len()));
    }

    // HAProxy's log: the retries of each request, by id.
    let mut retries: HashMap<String, u32> = HashMap::new();
    for line in std::fs::read_to_string(&haproxy_log).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5 {
            let rc = f[2].trim_start_matches('+').parse().unwrap_or(0);
            let id = f[4].trim_matches(|c| c == '{' || c == '}').to_string();
            retries.insert(id, rc);
        }
    }

    // Each replica generation's access log: readiness, and the ids it answered.
    let mut answered: HashMap<String, String> = HashMap::new();
    let mut early = 0usize;
    // Predictions that reached a handler on two replicas (one retried after it had).
    let mut twice = 0usize;
    let mut generations = 0usize;
    for r in &replicas {
        for logs in &r.logs {
            generations += 1;
            let lines = access_log(logs);
            let ready = lines
                .iter()
                .filter(|a| a.request.starts_with("GET /v2/health/ready") && a.status == 200)
                .map(|a| a.at)
                .min();
            for a in lines
                .iter()
                .filter(|a| a.request.starts_with("POST /predictions"))
            {
                let arrived = a.at - a.latency;
                if ready.is_none_or(|ready| arrived < ready) {
                    early += 1;
                    problems.push(format!(
                        "{} ({}) got a prediction before its first ready answer: {}",
                        r.name,
                        logs.display(),
                        a.id
                    ));
                }
                if answered.insert(a.id.clone(), r.name.clone()).is_some() {
                    twice += 1;
                }
            }
        }
    }
    if twice > 0 {
        problems.push(format!(
            "{twice} requests reached a handler on two replicas: retried after they had"
        ));
    }
    let mut unlogged = 0usize;
    for s in samples.iter().filter(|s| s.failure.is_none()) {
        match answered.get(&s.id) {
            Some(name) if *name == s.replica => {}
            Some(name) => problems.push(format!(
                "{} was answered by {} (x-replica) and logged by {name}",
                s.id, s.replica
            )),
            None => unlogged += 1,
        }
    }
    if unlogged > 0 {
        problems.push(format!(
            "{unlogged} answered requests' x-request-id is in no replica's access log"
        ));
    }
    let balancer_ids = samples.iter().filter(|s| !s.id.starts_with("lb-")).count();

    // Prometheus: every target up, with samples, and the predictions counted.
    let mut prom_lines = Vec::new();
    let value = |v: &serde_json::Value| v["value"][1].as_str().unwrap_or("").to_string();
    for r in &replicas {
        let find = |set: &serde_json::Value| {
            set.as_array()
                .into_iter()
                .flatten()
                .find(|m| m["metric"]["replica"] == r.name.as_str())
                .map(value)
        };
        let (u, s, c) = (find(&up), find(&scraped), find(&counted));
        if u.as_deref() != Some("1") {
            problems.push(format!("Prometheus: {} is not up: {up}", r.name));
        }
        if s.as_deref()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
            <= 0.0
        {
            problems.push(format!("Prometheus scraped no samples from {}", r.name));
        }
        if c.as_deref()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
            <= 0.0
        {
            problems.push(format!("Prometheus counted no predictions on {}", r.name));
        }
        prom_lines.push(format!(
            "{}: up {}, {} samples a scrape, ts_inference_requests_total {}",
            r.name,
            u.unwrap_or_default(),
            s.unwrap_or_default(),
            c.unwrap_or_default()
        ));
    }

    // ---- the table ----------------------------------------------------------------------
    let mut report = String::new();
    writeln!(
        report,
        "{REPLICAS} wasmserve replicas behind HAProxy ({}), MobileNetV2 int8 on the kitten, \
         concurrency {CONCURRENCY}, {:.0} s; {} requests, {} with an id HAProxy gave them\n",
        String::from_utf8_lossy(&Command::new("haproxy").arg("-v").output().unwrap().stdout)
            .lines()
            .next()
            .unwrap_or("")
            .split(" - ")
            .next()
            .unwrap_or(""),
        run.as_secs_f64(),
        samples.len(),
        balancer_ids
    )
    .unwrap();
    writeln!(
        report,
        "| phase | s | requests | failed | retried by HAProxy | req/s | p50 ms | p99 ms | answered by r0 / r1 / r2 |"
    )
    .unwrap();
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|---|").unwrap();
    for p in &phases {
        let in_phase: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent >= p.start && s.sent < p.end)
            .collect();
        let mut lat: Vec<Duration> = in_phase.iter().map(|s| s.latency).collect();
        lat.sort();
        let secs = (p.end - p.start).as_secs_f64();
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &in_phase {
            *by.entry(s.replica.as_str()).or_default() += 1;
        }
        let retried = in_phase
            .iter()
            .filter(|s| retries.get(&s.id).is_some_and(|r| *r > 0))
            .count();
        writeln!(
            report,
            "| {} | {:.1} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            p.name,
            secs,
            in_phase.len(),
            in_phase.iter().filter(|s| s.failure.is_some()).count(),
            retried,
            in_phase.len() as f64 / secs,
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            (0..REPLICAS)
                .map(|i| by
                    .get(format!("r{i}").as_str())
                    .copied()
                    .unwrap_or(0)
                    .to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        )
        .unwrap();
    }
    let ids: HashSet<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    writeln!(
        report,
        "\nreplica processes: {generations} (3 + 1 killed + 3 rolled: {}); predictions \
         answered before the replica's first ready answer: {early}; retried requests that \
         had reached a handler (in two replicas' access logs): {twice}; x-request-id: {} \
         distinct, every answered one in the answering replica's access log: {}",
        replaced.lock().unwrap().join(", "),
        ids.len(),
        if unlogged == 0 { "yes" } else { "no" }
    )
    .unwrap();
    writeln!(
        report,
        "Prometheus (scrape every 1 s): {}",
        prom_lines.join("; ")
    )
    .unwrap();
    print!("{report}");
    if !problems.is_empty() {
        eprintln!("\nFAILED:");
        for p in &problems {
            eprintln!("- {p}");
        }
        std::process::exit(1);
    }
    println!("\nall checks passed");
}
