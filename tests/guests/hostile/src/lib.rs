//! A hostile handler for the security and soak tests (`tests/security.rs`,
//! `tests/soak.rs`). The request body is a command, `NAME [ARG…]`, that preprocess
//! carries out; postprocess answers with what happened.
//!
//! Sandbox probes answer `{"ok": bool, "detail": "…"}`, `ok` meaning that the attempt
//! *succeeded* (the sandbox let it through):
//!
//! - `passwd`: read `/etc/passwd`; `ls-root`: list `/`; `escape`: read `/etc/passwd`
//!   through `/model/..` and relative paths;
//! - `write-model`: create a file in `/model`, delete one there, make a folder there;
//! - `ls-model`: list `/model` (allowed: the archive's files);
//! - `socket PORT`: TCP connect to `127.0.0.1:PORT` through `std::net` (which on
//!   wasm32-wasip2 goes through wasi-libc to `wasi:sockets`); `udp PORT`: bind a UDP
//!   socket and send to `127.0.0.1:PORT`; `listen`: bind a TCP listener;
//!   `resolve`: look `localhost` up;
//! - `env`: the environment variables and the arguments;
//! - `clock`: reads the monotonic clock in a busy loop and the wall clock; also answers
//!   `min_step_ns` (the smallest nonzero step seen, `null` if it never moved), `steps`,
//!   `iterations` and `wall_sub_ms_ns` (the largest remainder below one millisecond of
//!   the wall clock over its samples).
//!
//! Faults:
//!
//! - `trap` (`unreachable`), `panic`, `loop` (a busy loop without end), `sleep`
//!   (`std::thread::sleep` of 1000 s; should it ever return, the answer says how long it
//!   slept), `membomb` (allocates and touches 1 MiB blocks until an allocation fails; if
//!   the failure comes back to the guest instead of trapping, the request fails with
//!   how much it got);
//! - `badtensor` (a float32 `[1, 4]` tensor with 3 bytes), `overflowtensor` (a shape
//!   whose size overflows 64 bits), `notensor` (no input at all);
//! - `bigoutput N` (an N-byte body from postprocess), `bigheaders N` (N response headers
//!   of 1 KiB each), `badstatus [S]` (a response with status S, default 42), `badheaders`
//!   (response headers with CR/LF injection and an invalid name), `respond JSON` (the
//!   response `{"status", "headers": [[name, value], …], "body"}` as given: framing
//!   headers of its own, for instance);
//! - `stdout N` (N lines on stdout and N on stderr), `longline N` (one N-byte line on
//!   stdout), `logflood N` (N calls of the host log), `metricflood N` (N metrics with
//!   distinct names, each claiming another model's labels);
//! - `stream N [BYTES]`: N intermediate responses from postprocess (`piece I`, padded
//!   with `.` to BYTES bytes and a newline), then the final `done N`; should a piece not
//!   go out, the handler logs `hostile stream stopped after I pieces: ERROR` (warn) and
//!   fails the request; `streamforever`: intermediate responses without end, ignoring
//!   errors (only the time limit stops it); `streamearly`: one piece from preprocess,
//!   one from postprocess, then the final;
//! - `ok`: a normal answer, `{"ok": true, "detail": "ok", "output": [model output]}`.
//!
//! Anything else is a 400.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wasmserve_handler::{
    Context, Dtype, Error, Handler, Level, Request, Response, Tensor, log, metric,
    send_intermediate,
};

struct Hostile {
    /// What preprocess found, for postprocess to answer with.
    note: RefCell<Option<Value>>,
}

/// The command and its arguments.
fn command(req: &Request) -> Result<(String, Vec<String>), Error> {
    let text = req.input_text()?;
    let mut words = text.split_whitespace().map(str::to_string);
    let cmd = words.next().unwrap_or_else(|| "ok".into());
    Ok((cmd, words.collect()))
}

/// The first argument as a number, or `default`.
fn number(args: &[String], default: u64) -> u64 {
    args.first().and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// Intermediate response `i`: `piece I`, padded with `.` to `size` bytes, and a newline.
fn piece(i: u64, size: usize) -> Response {
    let mut body = format!("piece {i}").into_bytes();
    if body.len() < size {
        body.resize(size, b'.');
    }
    body.push(b'\n');
    Response::bytes("text/plain", body)
}

fn outcome(r: Result<String, String>) -> Value {
    match r {
        Ok(detail) => json!({"ok": true, "detail": detail}),
        Err(detail) => json!({"ok": false, "detail": detail}),
    }
}

fn list(dir: &str) -> Result<String, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read_dir({dir}): {e}"))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(","))
}

/// Tries each attempt in turn: the first that succeeds is reported as a success, else
/// every failure is.
fn any_of(attempts: Vec<(&str, Result<String, String>)>) -> Value {
    let mut failures = Vec::new();
    for (what, r) in attempts {
        match r {
            Ok(d) => return json!({"ok": true, "detail": format!("{what}: {d}")}),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    json!({"ok": false, "detail": failures.join("; ")})
}

fn port(args: &[String]) -> u16 {
    number(args, 9) as u16
}

fn probe(cmd: &str, args: &[String]) -> Option<Value> {
    let err = |e: std::io::Error| e.to_string();
    Some(match cmd {
        "passwd" => outcome(
            std::fs::read_to_string("/etc/passwd")
                .map(|s| s.chars().take(200).collect())
                .map_err(err),
        ),
        "ls-root" => outcome(list("/")),
        "escape" => any_of(
            [
                "/model/../etc/passwd",
                "/model/../../../../etc/passwd",
                "../../../../etc/passwd",
                "etc/passwd",
            ]
            .into_iter()
            .map(|p| {
                (
                    p,
                    std::fs::read_to_string(p)
                        .map(|s| s.chars().take(200).collect())
                        .map_err(err),
                )
            })
            .collect(),
        ),
        "ls-model" => outcome(list("/model")),
        "write-model" => any_of(vec![
            (
                "create /model/planted.txt",
                std::fs::write("/model/planted.txt", b"owned")
                    .map(|_| "written".to_string())
                    .map_err(err),
            ),
            (
                "remove /model/MAR-INF/MANIFEST.json",
                std::fs::remove_file("/model/MAR-INF/MANIFEST.json")
                    .map(|_| "removed".to_string())
                    .map_err(err),
            ),
            (
                "mkdir /model/planted",
                std::fs::create_dir("/model/planted")
                    .map(|_| "made".to_string())
                    .map_err(err),
            ),
        ]),
        "socket" => {
            let p = port(args);
            let r = std::net::TcpStream::connect(("127.0.0.1", p))
                .and_then(|mut s| s.write_all(b"hello from the sandbox\n"))
                .map(|_| format!("std::net::TcpStream connected to 127.0.0.1:{p} and wrote"))
                .map_err(|e| format!("std::net::TcpStream::connect(127.0.0.1:{p}): {e}"));
            outcome(r)
        }
        "udp" => {
            let p = port(args);
            let r = std::net::UdpSocket::bind("0.0.0.0:0")
                .and_then(|s| s.send_to(b"hello from the sandbox", ("127.0.0.1", p)))
                .map(|n| format!("std::net::UdpSocket sent {n} bytes to 127.0.0.1:{p}"))
                .map_err(|e| format!("std::net::UdpSocket: {e}"));
            outcome(r)
        }
        "listen" => outcome(
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| format!("std::net::TcpListener bound {a}"))
                .map_err(|e| format!("std::net::TcpListener::bind: {e}")),
        ),
        "resolve" => {
            use std::net::ToSocketAddrs as _;
            outcome(
                ("localhost", 80)
                    .to_socket_addrs()
                    .map(|a| format!("{:?}", a.collect::<Vec<_>>()))
                    .map_err(|e| format!("resolving localhost: {e}")),
            )
        }
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            let args: Vec<String> = std::env::args().collect();
            json!({
                "ok": !vars.is_empty() || !args.is_empty(),
                "detail": format!("{} variable(s): {}; {} argument(s): {}",
                    vars.len(), vars.join(";"), args.len(), args.join(" ")),
            })
        }
        "clock" => clock(),
        _ => return None,
    })
}

/// The monotonic clock's finest step and the wall clock's sub-millisecond part.
fn clock() -> Value {
    let start = Instant::now();
    let mut last = start;
    let mut min_step: Option<u128> = None;
    let (mut steps, mut iterations) = (0u32, 0u64);
    while steps < 20 && iterations < 2_000_000 {
        let now = Instant::now();
        let step = now.duration_since(last).as_nanos();
        if step > 0 {
            min_step = Some(min_step.map_or(step, |m| m.min(step)));
            steps += 1;
        }
        last = now;
        iterations += 1;
    }
    let mut wall_sub_ms = 0u32;
    for _ in 0..1000 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        wall_sub_ms = wall_sub_ms.max(wall.subsec_nanos() % 1_000_000);
    }
    json!({
        "ok": true,
        "detail": format!(
            "monotonic: smallest nonzero step {min_step:?} ns over {steps} step(s) in {iterations} reads; \
             wall clock: largest sub-millisecond remainder {wall_sub_ms} ns"
        ),
        "min_step_ns": min_step.map(|s| s as u64),
        "steps": steps,
        "iterations": iterations,
        "wall_sub_ms_ns": wall_sub_ms,
    })
}

/// Allocates and touches 1 MiB blocks until an allocation fails.
fn membomb() -> Error {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block: Vec<u8> = Vec::new();
        if block.try_reserve_exact(1 << 20).is_err() || hoard.try_reserve(1).is_err() {
            let got = hoard.len();
            drop(hoard);
            return Error::internal(format!(
                "membomb: an allocation failed inside the guest after {got} MiB"
            ));
        }
        block.resize(1 << 20, 0xa5);
        hoard.push(std::hint::black_box(block));
    }
}

impl Handler for Hostile {
    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Hostile {
            note: RefCell::new(None),
        })
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let (cmd, args) = command(req)?;
        let n = number(&args, 0);
        let mut note = None;
        match cmd.as_str() {
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("the hostile handler panics on purpose"),
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => {
                let started = Instant::now();
                std::thread::sleep(Duration::from_secs(1000));
                note = Some(json!({
                    "ok": true,
                    "detail": format!("slept {} ms of 1000000 ms", started.elapsed().as_millis()),
                }));
            }
            "membomb" => return Err(membomb()),
            "badtensor" => {
                return Ok(vec![Tensor {
                    name: String::new(),
                    dtype: Dtype::Float32,
                    shape: vec![1, 4],
                    data: vec![0; 3],
                }]);
            }
            "overflowtensor" => {
                return Ok(vec![Tensor {
                    name: String::new(),
                    dtype: Dtype::Float32,
                    shape: vec![1, u64::MAX / 2, 4],
                    data: vec![0; 16],
                }]);
            }
            "notensor" => return Ok(Vec::new()),
            "stdout" => {
                for i in 0..n {
                    println!("hostile stdout line {i}");
                    eprintln!("hostile stderr line {i}");
                }
            }
            "longline" => {
                let line = "y".repeat(n as usize);
                println!("hostile long line {line}");
            }
            "logflood" => {
                for i in 0..n {
                    log(Level::Info, &format!("hostile log line {i}"));
                }
            }
            "metricflood" => {
                for i in 0..n {
                    metric(
                        &format!("hostile_flood_{i}"),
                        i as f64,
                        "count",
                        &[("model_name", "someone_else"), ("model_version", "9.9")],
                    );
                }
            }
            "streamearly" => {
                send_intermediate(&piece(0, 0)).map_err(Error::internal)?;
            }
            "ok" | "bigoutput" | "bigheaders" | "badstatus" | "badheaders" | "respond"
            | "stream" | "streamforever" => {}
            other => match probe(other, &args) {
                Some(found) => note = Some(found),
                None => {
                    return Err(Error::bad_request(format!("unknown command {other:?}")));
                }
            },
        }
        *self.note.borrow_mut() = note;
        Ok(vec![Tensor::from_slice(&[1, 1], &[1.0f32])?])
    }

    fn postprocess(&self, req: &Request, outputs: Vec<Tensor>) -> Result<Response, Error> {
        let (cmd, args) = command(req)?;
        let note = self.note.borrow_mut().take();
        match cmd.as_str() {
            "bigoutput" => Ok(Response {
                status: 200,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: vec![b'x'; number(&args, 0) as usize],
            }),
            "bigheaders" => Ok(Response {
                status: 200,
                headers: (0..number(&args, 0))
                    .map(|i| (format!("x-big-{i}"), "h".repeat(1024)))
                    .collect(),
                body: br#"{"ok": true, "detail": "big headers"}"#.to_vec(),
            }),
            "respond" => {
                let text = req.input_text()?;
                let spec: Value =
                    serde_json::from_str(text.trim_start().trim_start_matches("respond"))
                        .map_err(|e| Error::bad_request(format!("respond: {e}")))?;
                Ok(Response {
                    status: spec["status"].as_u64().unwrap_or(200) as u16,
                    headers: spec["headers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| {
                            let part = |i: usize| h[i].as_str().unwrap_or_default().to_string();
                            (part(0), part(1))
                        })
                        .collect(),
                    body: spec["body"]
                        .as_str()
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec(),
                })
            }
            "stream" => {
                let n = number(&args, 0);
                let size = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
                for i in 0..n {
                    if let Err(e) = send_intermediate(&piece(i, size)) {
                        log(
                            Level::Warn,
                            &format!("hostile stream stopped after {i} pieces: {e}"),
                        );
                        return Err(Error::internal(e));
                    }
                }
                Ok(Response::bytes(
                    "text/plain",
                    format!("done {n}\n").into_bytes(),
                ))
            }
            "streamforever" => {
                let mut i = 0;
                loop {
                    let _ = send_intermediate(&piece(i, 0));
                    i += 1;
                }
            }
            "streamearly" => {
                send_intermediate(&piece(1, 0)).map_err(Error::internal)?;
                Ok(Response::bytes("text/plain", b"done 2\n".to_vec()))
            }
            "badstatus" => Ok(Response {
                status: number(&args, 42) as u16,
                headers: Vec::new(),
                body: br#"{"ok": true, "detail": "a bad status"}"#.to_vec(),
            }),
            "badheaders" => Ok(Response {
                status: 200,
                headers: vec![
                    ("x-evil".into(), "a\r\nset-cookie: pwned=1".into()),
                    ("bad header\r\nset-cookie: pwned=2".into(), "v".into()),
                    ("x-fine".into(), "fine".into()),
                ],
                body: br#"{"ok": true, "detail": "bad headers"}"#.to_vec(),
            }),
            _ => {
                let mut answer = note.unwrap_or_else(|| json!({"ok": true, "detail": cmd}));
                if cmd == "ok" {
                    let output: Vec<f32> = outputs
                        .first()
                        .map(|t| t.to_vec())
                        .transpose()?
                        .unwrap_or_default();
                    answer["output"] = json!(output);
                }
                Response::json(&answer)
            }
        }
    }
}

wasmserve_handler::export_handler!(Hostile);
