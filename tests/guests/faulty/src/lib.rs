//! A hostile handler for the security tests. The request body is a command:
//!
//! - probes, answered as `{"ok": bool, "detail": "…"}` (`ok`: the attempt succeeded):
//!   `passwd` (read /etc/passwd), `ls-root` (list /), `write-model` (create a file in
//!   /model), `ls-model` (list /model, which is allowed), `socket PORT` (TCP connect to
//!   127.0.0.1:PORT), `env` (the environment), `clock` (the finest step of the monotonic
//!   clock and the wall clock's sub-millisecond part, in ns);
//! - faults: `trap`, `panic`, `loop`, `sleep`, `membomb`, `badtensor` (a tensor whose
//!   bytes do not match its shape), `bigoutput N` (an N-byte answer), `stdout N` (N lines
//!   on stdout and on stderr), `logflood N` (N log calls), `metricflood N` (N metrics,
//!   each claiming another model's labels);
//! - `ok`: a normal answer.

use std::time::{Duration, Instant, SystemTime};

use wasmserve_handler::{
    Context, Dtype, Error, Handler, Level, Request, Response, Tensor, log, metric,
};

struct Faulty;

fn command(req: &Request) -> Result<(String, u64), Error> {
    let text = req.input_text()?;
    let mut words = text.split_whitespace();
    let cmd = words.next().unwrap_or("ok").to_string();
    let n = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    Ok((cmd, n))
}

fn probe(cmd: &str, n: u64) -> Option<(bool, String)> {
    let outcome = |r: Result<String, String>| match r {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    };
    Some(match cmd {
        "passwd" => outcome(std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())),
        "ls-root" => outcome(list("/")),
        "ls-model" => outcome(list("/model")),
        "write-model" => outcome(
            std::fs::write("/model/planted.txt", b"owned")
                .map(|_| "written".to_string())
                .map_err(|e| e.to_string()),
        ),
        "socket" => outcome(
            std::net::TcpStream::connect(("127.0.0.1", n as u16))
                .map(|_| "connected".to_string())
                .map_err(|e| e.to_string()),
        ),
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            (!vars.is_empty(), vars.join(";"))
        }
        "clock" => {
            let start = Instant::now();
            let mut last = start;
            let mut finest = u128::MAX;
            while start.elapsed() < Duration::from_millis(30) {
                let now = Instant::now();
                let step = now.duration_since(last).as_nanos();
                if step > 0 {
                    finest = finest.min(step);
                }
                last = now;
            }
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            (
                true,
                format!("{finest} {}", wall.subsec_nanos() % 1_000_000),
            )
        }
        _ => return None,
    })
}

fn list(dir: &str) -> Result<String, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(","))
}

impl Handler for Faulty {
    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Faulty)
    }

    fn preprocess(&self, req: &Request) -> Result<Vec<Tensor>, Error> {
        let (cmd, n) = command(req)?;
        match cmd.as_str() {
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("the faulty handler panics on purpose"),
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "sleep" => std::thread::sleep(Duration::from_secs(1000)),
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "badtensor" => {
                return Ok(vec![Tensor {
                    name: String::new(),
                    dtype: Dtype::Float32,
                    shape: vec![1, 4],
                    data: vec![0; 3],
                }]);
            }
            "stdout" => {
                for i in 0..n {
                    println!("faulty stdout line {i}");
                    eprintln!("faulty stderr line {i}");
                }
            }
            "logflood" => {
                for i in 0..n {
                    log(Level::Info, &format!("faulty log line {i}"));
                }
            }
            "metricflood" => {
                for i in 0..n {
                    metric(
                        &format!("faulty_flood_{i}"),
                        i as f64,
                        "count",
                        &[("model_name", "someone_else"), ("model_version", "9.9")],
                    );
                }
            }
            _ => {}
        }
        Ok(vec![Tensor::from_slice(&[1, 1], &[1.0f32])?])
    }

    fn postprocess(&self, req: &Request, _outputs: Vec<Tensor>) -> Result<Response, Error> {
        let (cmd, n) = command(req)?;
        if cmd == "bigoutput" {
            return Ok(Response {
                status: 200,
                headers: vec![("content-type".into(), "application/octet-stream".into())],
                body: vec![b'x'; n as usize],
            });
        }
        match probe(&cmd, n) {
            Some((ok, detail)) => Response::json(&serde_json::json!({"ok": ok, "detail": detail})),
            None => Response::json(&serde_json::json!({"ok": true, "detail": cmd})),
        }
    }
}

wasmserve_handler::export_handler!(Faulty);
