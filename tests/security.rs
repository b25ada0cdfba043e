//! Attacks on the server, end to end with the real binary: a hostile handler
//! (`tests/guests/hostile`) that probes its sandbox and misbehaves in every way a handler
//! can, hostile archives registered through the management API, and bad and slow
//! clients. Each attack may cost its own request and nothing else: afterwards the same
//! model answers again (its lane has a fresh instance), a mobilenet served beside it
//! classifies the kitten, and `/ping` says Healthy.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The hostile model's settings: one worker, so that a fault and the request after it
/// meet the same lane; a 2 s time bound; 64 MiB of linear memory.
const HOSTILE_YAML: &str =
    "responseTimeout: 2\nhandlerMemoryLimitMb: 64\nminWorkers: 1\nmaxWorkers: 1\n";
/// `responseTimeout` of [`HOSTILE_YAML`].
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A server with the hostile handler (`hostile`) and mobilenet, its work folder in `tmp`.
struct Setup {
    store: ModelStore,
    /// The server's `TMPDIR`: its work folder is made in here.
    tmp: tempfile::TempDir,
    server: Server,
}

fn serve_hostile(config: &str, env: &[(&str, &str)]) -> Setup {
    serve_hostile_with(HOSTILE_YAML, config, env)
}

/// Like [`serve_hostile`], with `yaml` as the hostile model's `model-config.yaml`.
fn serve_hostile_with(yaml: &str, config: &str, env: &[(&str, &str)]) -> Setup {
    let store = ModelStore::new();
    store.hostile("hostile", yaml);
    store.mobilenet();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_str().unwrap().to_string();
    let mut env = env.to_vec();
    env.push(("TMPDIR", &tmp_path));
    let server = Server::start_with_env(
        store.path(),
        &["hostile.mar", "mobilenet.mar"],
        config,
        &env,
    );
    Setup { store, tmp, server }
}

fn ask(server: &Server, command: &str) -> (u16, Value) {
    hostile_command(server, "hostile", command)
}

/// After an attack: the hostile model answers a normal request, mobilenet classifies
/// the kitten, /ping is healthy.
fn still_fine(server: &Server, after: &str) {
    let (status, body) = ask(server, "ok");
    assert_eq!(
        status, 200,
        "after {after}: the hostile model's next request: {body}"
    );
    assert_eq!(body["output"], json!([2.0]), "after {after}: {body}");
    let (status, body) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    assert_eq!(status, 200, "after {after}: mobilenet beside it: {body}");
    assert!(body.get("tabby").is_some(), "after {after}: {body}");
    let (status, body) = json(client().get(server.url("/ping")).send().unwrap());
    assert_eq!(
        (status, &body),
        (200, &json!({"status": "Healthy"})),
        "after {after}: /ping"
    );
}

// ---------------------------------------------------------------------------------------
// The sandbox

#[test]
fn the_sandbox_holds() {
    let secret = format!("hunter2-{}", std::process::id());
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let s = serve_hostile("", &[("WASMSERVE_TEST_SECRET", &secret)]);
    let server = &s.server;

    for probe in [
        "passwd".to_string(),
        "ls-root".into(),
        "escape".into(),
        "write-model".into(),
        format!("socket {tcp_port}"),
        format!("udp {udp_port}"),
        "listen".into(),
        "resolve".into(),
        "env".into(),
    ] {
        let (status, body) = ask(server, &probe);
        assert_eq!(status, 200, "{probe}: {body}");
        assert_eq!(body["ok"], false, "{probe} got through the sandbox: {body}");
        assert!(
            !body.to_string().contains(&secret),
            "{probe} saw the server's environment: {body}"
        );
        println!("{probe}: {}", body["detail"]);
    }
    // Nobody connected or sent anything.
    tcp.set_nonblocking(true).unwrap();
    assert!(tcp.accept().is_err(), "the guest connected to the host");
    udp.set_nonblocking(true).unwrap();
    assert!(
        udp.recv_from(&mut [0u8; 64]).is_err(),
        "the guest sent a datagram"
    );

    // Its own archive is readable, and only it.
    let (status, body) = ask(server, "ls-model");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "/model must be readable: {body}");
    let listing = body["detail"].as_str().unwrap();
    assert!(
        listing.contains("double.pt") && listing.contains("MAR-INF"),
        "{listing}"
    );
    assert!(!listing.contains("planted"), "{listing}");
    // The extracted archive on the host is untouched.
    let extracted = find_files(s.tmp.path(), "double.pt");
    assert_eq!(extracted.len(), 1, "{extracted:?}");
    let model_dir = extracted[0].parent().unwrap();
    assert!(!model_dir.join("planted.txt").exists());
    assert!(!model_dir.join("planted").exists());
    assert!(model_dir.join("MAR-INF/MANIFEST.json").is_file());

    // The clocks tick in whole milliseconds.
    let (status, body) = ask(server, "clock");
    assert_eq!(status, 200, "{body}");
    println!("clock: {}", body["detail"]);
    let step = body["min_step_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("the monotonic clock never moved: {body}"));
    assert!(
        step >= 1_000_000,
        "the monotonic clock's finest step is {step} ns: {body}"
    );
    assert_eq!(
        body["wall_sub_ms_ns"], 0,
        "the wall clock has a sub-millisecond part: {body}"
    );
    still_fine(server, "the probes");
}

/// Every file named `name` under `dir`.
fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    find_files_with(dir, |n| n == name)
}

/// Every file under `dir` whose name passes `wanted`.
fn find_files_with(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                todo.push(p);
            } else if wanted(&e.file_name().to_string_lossy()) {
                found.push(p);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// Faults: each fails its own request with TorchServe's error body, twice in a row, and
// the next request, the model beside it and /ping are fine.

fn fault(command: &str, expected: &str) -> Setup {
    let s = serve_hostile("", &[]);
    still_fine(&s.server, "the start");
    for attempt in 1..=2 {
        let started = Instant::now();
        let (status, body) = ask(&s.server, command);
        let took = started.elapsed();
        println!("{command} (attempt {attempt}): {status} in {took:?}: {body}");
        assert!((500..600).contains(&status), "{command}: {status} {body}");
        assert_eq!(body["code"], status, "{command}: {body}");
        assert_eq!(body["type"], "InternalServerException", "{command}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && message.contains(expected),
            "{command}: the message should say {expected:?}: {body}"
        );
        // The bound only tells a fault cut off at its model's responseTimeout (2 s) from
        // one left to the server's default (120 s); it is wide so that a slow or loaded
        // machine cannot fail it.
        assert!(
            took < RESPONSE_TIMEOUT + Duration::from_secs(15),
            "{command} was answered after {took:?}, its responseTimeout is {RESPONSE_TIMEOUT:?}"
        );
        still_fine(&s.server, command);
    }
    s
}

#[test]
fn fault_trap() {
    fault("trap", "unreachable");
}

#[test]
fn fault_panic() {
    let s = fault("panic", "handler");
    // The panic message went to the model log (written asynchronously: waited for).
    assert!(
        s.server.wait_for_log(
            "the hostile handler panics on purpose",
            Duration::from_secs(10)
        ),
        "the panic message is not in the log:\n{}",
        s.server.log()
    );
}

#[test]
fn fault_membomb() {
    let s = serve_hostile("", &[]);
    let (status, body) = ask(&s.server, "membomb");
    println!("membomb: {status} {body}");
    assert!((500..600).contains(&status), "{status} {body}");
    assert_eq!(body["type"], "InternalServerException", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory"), "{body}");
    // Capped at the model's 64 MiB, not the server's 256.
    assert!(message.contains("64 MiB"), "{body}");
    drop(s);
    fault("membomb", "memory");
}

#[test]
fn fault_badtensor() {
    fault("badtensor", "bytes");
}

#[test]
fn fault_overflowing_tensor_shape() {
    fault("overflowtensor", "bytes");
}

#[test]
fn fault_no_input_tensor() {
    fault("notensor", "");
}

#[test]
fn fault_bigoutput_over_max_response_size() {
    let s = fault("bigoutput 10000000", "max_response_size");
    // The default limit, 6553500 bytes, is itself allowed.
    let resp = client()
        .post(s.server.url("/predictions/hostile"))
        .body("bigoutput 6553500")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().unwrap().len(), 6_553_500);
}

#[test]
fn fault_endless_loop() {
    fault("loop", "responseTimeout");
}

#[test]
fn fault_sleep() {
    fault("sleep", "responseTimeout");
}

/// What a handler answers must not break HTTP: a status outside 200–599 becomes a 5xx,
/// header values with CR/LF and invalid header names are dropped.
#[test]
fn a_handler_cannot_break_http_framing() {
    let s = serve_hostile("", &[]);
    let mut failures = Vec::new();
    for status in [0u16, 42, 100, 101, 199, 1000] {
        // On a connection of its own: what the server writes back, raw.
        let body = format!("badstatus {status}");
        let mut conn = raw(
            &s.server.base,
            text_post("/predictions/hostile", &body, true).as_bytes(),
        );
        let (answer, closed) = read_all(&mut conn, Duration::from_secs(5));
        let status_line = answer.lines().next().unwrap_or("").to_string();
        println!("badstatus {status}: {status_line:?}, closed: {closed}");
        if !status_line.starts_with("HTTP/1.1 5") {
            failures.push(format!(
                "a handler's status {status} reached the client as {status_line:?}:\n{answer}"
            ));
        }
        still_fine(&s.server, &format!("badstatus {status}"));
    }
    let resp = client()
        .post(s.server.url("/predictions/hostile"))
        .body("badheaders")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("set-cookie").is_none(), "{resp:?}");
    assert_eq!(resp.headers()["x-fine"], "fine");
    still_fine(&s.server, "badheaders");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// max_response_size bounds the whole answer, headers included: 10,000 headers of
/// 1 KiB (10 MB) are refused like a 10 MB body.
#[test]
fn fault_bigheaders_over_max_response_size() {
    let s = serve_hostile("", &[]);
    let body = "bigheaders 10000";
    let mut conn = raw(
        &s.server.base,
        text_post("/predictions/hostile", body, true).as_bytes(),
    );
    let (answer, _) = read_all(&mut conn, Duration::from_secs(10));
    let status_line = answer.lines().next().unwrap_or("");
    println!(
        "bigheaders 10000: {status_line:?}, {} bytes in all",
        answer.len()
    );
    assert!(status_line.starts_with("HTTP/1.1 5"), "{status_line:?}");
    assert!(answer.contains("max_response_size"), "{status_line:?}");
    still_fine(&s.server, "bigheaders");
}

/// One HTTP/1.1 response at the start of `buf`, framed as its headers say
/// (Content-Length, chunked, or until the end): `(status, body, bytes used)`, or `None`
/// when `buf` does not hold a whole one.
fn next_response(buf: &[u8]) -> Option<(u16, Vec<u8>, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let rest = &buf[head_end..];
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = String::from_utf8_lossy(&rest[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // No trailers: the final CRLF.
                if rest.len() < at + 2 {
                    return None;
                }
                return Some((status, body, head_end + at + 2));
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    match header("content-length") {
        Some(n) => {
            let n: usize = n.parse().ok()?;
            (rest.len() >= n).then(|| (status, rest[..n].to_vec(), head_end + n))
        }
        None if (100..200).contains(&status) || status == 204 || status == 304 => {
            Some((status, Vec::new(), head_end))
        }
        None => Some((status, rest.to_vec(), buf.len())),
    }
}

/// Framing headers from a handler cannot split or merge responses: pipelined behind its
/// answer, a /ping gets its own, and a response the handler hides in its body never
/// reaches the client as one.
#[test]
fn a_handler_cannot_desync_http() {
    let s = serve_hostile("", &[]);
    let fake = "HTTP/1.1 299 Smuggled\r\nContent-Length: 0\r\n\r\n";
    let cases = [
        (
            "a short Content-Length",
            json!({"status": 200, "headers": [["content-length", "5"]], "body": format!("hello{fake}")}),
        ),
        (
            "a long Content-Length",
            json!({"status": 200, "headers": [["content-length", "500"]], "body": "hello"}),
        ),
        (
            "two Content-Lengths",
            json!({"status": 200, "headers": [["content-length", "5"], ["content-length", "60"]], "body": format!("hello{fake}")}),
        ),
        (
            "Transfer-Encoding: chunked",
            json!({"status": 200, "headers": [["transfer-encoding", "chunked"]], "body": format!("5\r\nhello\r\n0\r\n\r\n{fake}")}),
        ),
        (
            "Connection: upgrade",
            json!({"status": 200, "headers": [["connection", "upgrade"], ["upgrade", "h2c"]], "body": "hello"}),
        ),
    ];
    let mut failures = Vec::new();
    for (what, spec) in cases {
        let body = format!("respond {spec}");
        let mut conn = raw(
            &s.server.base,
            format!(
                "{}GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                text_post("/predictions/hostile", &body, false)
            )
            .as_bytes(),
        );
        let mut answer = Vec::new();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = conn.read_to_end(&mut answer);
        let mut responses = Vec::new();
        let mut rest = &answer[..];
        while let Some((status, body, used)) = next_response(rest) {
            responses.push((status, String::from_utf8_lossy(&body).into_owned()));
            rest = &rest[used..];
            if rest.is_empty() {
                break;
            }
        }
        println!("{what}: {responses:?}, {} bytes left over", rest.len());
        let smuggled = responses.iter().any(|(st, _)| *st == 299);
        let ping_answered =
            responses.len() == 2 && responses[1].0 == 200 && responses[1].1.contains("Healthy");
        let closed_after_first = responses.len() == 1;
        if smuggled || !rest.is_empty() || !(ping_answered || closed_after_first) {
            failures.push(format!(
                "{what}: the client read {responses:?} (+{} bytes):\n{}",
                rest.len(),
                String::from_utf8_lossy(&answer)
            ));
        }
        still_fine(&s.server, what);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// Output and logs

#[test]
fn guest_output_reaches_the_log_and_a_flood_is_capped() {
    // 200,000 lines take the guest about 2 s (each is a host call, dropped or not): a
    // time bound with room to spare.
    let mut s = serve_hostile_with(
        "responseTimeout: 30\nminWorkers: 1\nmaxWorkers: 1\n",
        "",
        &[],
    );
    for cmd in ["stdout 3", "logflood 3"] {
        let (status, body) = ask(&s.server, cmd);
        assert_eq!(status, 200, "{cmd}: {body}");
    }
    let wanted = [
        "hostile stdout line 2",
        "hostile stderr line 2",
        "hostile log line 2",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !wanted.iter().all(|w| s.server.log().contains(w)) {
        assert!(
            Instant::now() < deadline,
            "the guest's lines are not in the server's log:\n{}",
            s.server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Floods, while /ping is asked all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (url, stop) = (s.server.url("/ping"), stop.clone());
        std::thread::spawn(move || {
            let c = client();
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let status = c.get(&url).send().map(|r| r.status().as_u16());
                worst = worst.max(t.elapsed());
                assert_eq!(status.ok(), Some(200), "/ping during the flood");
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        })
    };
    for cmd in [
        "stdout 100000",
        "logflood 100000",
        "longline 1000000",
        "metricflood 5000",
    ] {
        let started = Instant::now();
        let (status, body) = ask(&s.server, cmd);
        println!("{cmd}: {status} in {:?}", started.elapsed());
        assert_eq!(status, 200, "{cmd}: {body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst_ping = pinger.join().unwrap();
    println!("slowest /ping during the floods: {worst_ping:?}");
    // A server blocked by the floods would not answer until they end (seconds each); a
    // wide bound, so that a slow machine's normal delays cannot fail it.
    assert!(
        worst_ping < Duration::from_secs(5),
        "/ping took {worst_ping:?} during a flood: the floods block the server"
    );

    std::thread::sleep(Duration::from_millis(500));
    let log = s.server.log();
    let count = |text: &str, what: &str| text.lines().filter(|l| l.contains(what)).count();
    let flood_lines = count(&log, "hostile stdout line")
        + count(&log, "hostile stderr line")
        + count(&log, "hostile log line");
    println!(
        "guest lines in the server log: {flood_lines} (of 300,006 written); log: {} lines",
        log.lines().count()
    );
    assert!(
        flood_lines <= 5000,
        "{flood_lines} guest lines reached the log"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 64 * 1024, "a log line of {longest} bytes");
    // The model log file, where there is one, is capped too.
    for file in std::fs::read_dir(s.store.path().join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = file.file_name().to_string_lossy().into_owned();
        if name.starts_with("model_log") {
            let text = std::fs::read_to_string(file.path()).unwrap();
            let n = count(&text, "hostile stdout line")
                + count(&text, "hostile stderr line")
                + count(&text, "hostile log line");
            println!("{name}: {n} guest lines");
            assert!(n <= 5000, "{name}: {n} guest lines");
        }
    }
    // Metrics: bounded, and under the host's labels only.
    let text = client()
        .get(s.server.metrics_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let series = count(&text, "hostile_flood_");
    println!("hostile_flood_ lines on /metrics: {series}");
    assert!(series <= 2000, "{series} metric lines from one handler");
    assert!(
        !text.contains("someone_else"),
        "a handler posed as another model"
    );
    still_fine(&s.server, "the floods");
}

// ---------------------------------------------------------------------------------------
// Hostile archives

/// One entry of a zip written byte by byte.
struct RawEntry<'a> {
    name: &'a str,
    /// 0 (stored) or 8 (deflate).
    method: u16,
    /// The bytes as stored (compressed for deflate).
    data: &'a [u8],
    crc: u32,
    /// The uncompressed size the headers declare.
    size: u64,
    /// A Unix mode for the external attributes (a symlink: `0o120777`).
    unix_mode: Option<u32>,
}

impl<'a> RawEntry<'a> {
    fn stored(name: &'a str, data: &'a [u8]) -> RawEntry<'a> {
        RawEntry {
            name,
            method: 0,
            data,
            crc: crc32fast::hash(data),
            size: data.len() as u64,
            unix_mode: None,
        }
    }
}

/// Writes a zip of `entries`, with zip64 extra fields where a size needs them (at most
/// 65,535 entries, offsets under 4 GiB). No checks: it writes what it is told.
fn raw_zip(path: &Path, entries: &[RawEntry]) {
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    let u16le = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let u32le = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    for e in entries {
        let offset = out.len() as u32;
        let csize = e.data.len() as u64;
        let zip64 = e.size >= 0xffff_ffff || csize >= 0xffff_ffff;
        let (needed, s32, c32) = if zip64 {
            (45u16, 0xffff_ffffu32, 0xffff_ffffu32)
        } else {
            (20u16, e.size as u32, csize as u32)
        };
        let mut extra = Vec::new();
        if zip64 {
            u16le(&mut extra, 0x0001);
            u16le(&mut extra, 16);
            extra.extend_from_slice(&e.size.to_le_bytes());
            extra.extend_from_slice(&csize.to_le_bytes());
        }
        // Local file header.
        u32le(&mut out, 0x0403_4b50);
        u16le(&mut out, needed);
        u16le(&mut out, 0); // flags
        u16le(&mut out, e.method);
        u16le(&mut out, 0); // time
        u16le(&mut out, 0x21); // 1980-01-01
        u32le(&mut out, e.crc);
        u32le(&mut out, c32);
        u32le(&mut out, s32);
        u16le(&mut out, e.name.len() as u16);
        u16le(&mut out, extra.len() as u16);
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(e.data);
        // Central directory header.
        u32le(&mut central, 0x0201_4b50);
        u16le(
            &mut central,
            if e.unix_mode.is_some() {
                0x0300 | 45
            } else {
                45
            },
        );
        u16le(&mut central, needed);
        u16le(&mut central, 0);
        u16le(&mut central, e.method);
        u16le(&mut central, 0);
        u16le(&mut central, 0x21);
        u32le(&mut central, e.crc);
        u32le(&mut central, c32);
        u32le(&mut central, s32);
        u16le(&mut central, e.name.len() as u16);
        u16le(&mut central, extra.len() as u16);
        u16le(&mut central, 0); // comment
        u16le(&mut central, 0); // disk
        u16le(&mut central, 0); // internal attributes
        u32le(&mut central, e.unix_mode.map_or(0, |m| m << 16));
        u32le(&mut central, offset);
        central.extend_from_slice(e.name.as_bytes());
        central.extend_from_slice(&extra);
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    u16le(&mut out, 0);
    u16le(&mut out, 0);
    u16le(&mut out, entries.len() as u16);
    u16le(&mut out, entries.len() as u16);
    u32le(&mut out, cd_size);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    std::fs::write(path, out).unwrap();
}

/// A raw deflate stream of `mib` MiB of zeros (about 1 KiB per MiB) and its CRC-32.
fn deflated_zeros(mib: u64) -> (Vec<u8>, u32) {
    let zeros = vec![0u8; 1 << 20];
    // One MiB, ending on a byte boundary (a sync flush) in a non-final block: copies of it
    // concatenate into one stream, which an empty final block ends.
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&zeros).unwrap();
    enc.flush().unwrap();
    let chunk = enc.get_ref().clone();
    let mut stream = Vec::with_capacity(chunk.len() * mib as usize + 2);
    let mut one = crc32fast::Hasher::new();
    one.update(&zeros);
    let mut crc = crc32fast::Hasher::new();
    for _ in 0..mib {
        stream.extend_from_slice(&chunk);
        crc.combine(&one);
    }
    stream.extend_from_slice(&[0x03, 0x00]);
    (stream, crc.finalize())
}

fn manifest(serialized: &str, handler: &str, config: Option<&str>) -> String {
    let mut model = json!({"modelName": "evil", "modelVersion": "1.0",
        "serializedFile": serialized, "handler": handler});
    if let Some(c) = config {
        model["configFile"] = json!(c);
    }
    json!({"runtime": "wasm", "model": model}).to_string()
}

/// A component of another world: it imports a function `evil` that no host provides.
const OTHER_WORLD_COMPONENT: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, // component preamble
    0x07, 0x05, 0x01, 0x40, 0x00, 0x01, 0x00, // type section: func()
    0x0a, 0x09, 0x01, 0x00, 0x04, b'e', b'v', b'i', b'l', 0x01, 0x00, // import "evil"
];
/// A valid component that imports and exports nothing.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
/// A core WebAssembly module (no component).
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

#[test]
fn hostile_archives_are_refused_and_leave_nothing_behind() {
    let store = ModelStore::new();
    store.mobilenet();
    let dir = store.path();
    let unique = format!("wasmserve-escape-{}", std::process::id());
    let model = std::fs::read(asset("models/mobilenet_v2_quantized.pt")).unwrap();
    let m = "MAR-INF/MANIFEST.json";
    let good = manifest("m.pt", "base_handler", None);
    let good_entries = || {
        vec![
            RawEntry::stored(m, good.as_bytes()),
            RawEntry::stored("m.pt", &model),
        ]
    };
    // (file, what the message must mention: any of these)
    let mut cases: Vec<(&str, Vec<&str>)> = Vec::new();

    std::fs::write(dir.join("notzip.mar"), b"PK\x03\x04 but not really a zip").unwrap();
    cases.push(("notzip.mar", vec!["not a model archive"]));

    let escaped = format!("../{unique}.txt");
    let mut entries = good_entries();
    entries.push(RawEntry::stored(&escaped, b"escaped"));
    raw_zip(&dir.join("dotdot.mar"), &entries);
    cases.push(("dotdot.mar", vec!["escapes"]));

    let nested = format!("sub/../../{unique}-nested.txt");
    let mut entries = good_entries();
    entries.push(RawEntry::stored(&nested, b"escaped"));
    raw_zip(&dir.join("nested-dotdot.mar"), &entries);
    cases.push(("nested-dotdot.mar", vec!["escapes"]));

    let absolute = format!("/tmp/{unique}-absolute.txt");
    let mut entries = good_entries();
    entries.push(RawEntry::stored(&absolute, b"absolute"));
    raw_zip(&dir.join("absolute.mar"), &entries);
    cases.push(("absolute.mar", vec!["escapes"]));

    let mut entries = good_entries();
    entries.push(RawEntry {
        unix_mode: Some(0o120777),
        ..RawEntry::stored("link", b"/etc/passwd")
    });
    raw_zip(&dir.join("symlink.mar"), &entries);
    cases.push(("symlink.mar", vec!["link"]));

    raw_zip(
        &dir.join("nomanifest.mar"),
        &[RawEntry::stored("m.pt", &model)],
    );
    cases.push(("nomanifest.mar", vec!["MANIFEST.json"]));

    raw_zip(
        &dir.join("badjson.mar"),
        &[
            RawEntry::stored(m, b"{\"runtime\": \"wasm\", \"model\": {"),
            RawEntry::stored("m.pt", &model),
        ],
    );
    cases.push(("badjson.mar", vec!["MANIFEST.json"]));

    let no_model = manifest("absent.pt", "base_handler", None);
    raw_zip(
        &dir.join("nomodel.mar"),
        &[RawEntry::stored(m, no_model.as_bytes())],
    );
    cases.push(("nomodel.mar", vec!["absent.pt"]));

    let no_handler = manifest("m.pt", "absent.wasm", None);
    raw_zip(
        &dir.join("nohandler.mar"),
        &[
            RawEntry::stored(m, no_handler.as_bytes()),
            RawEntry::stored("m.pt", &model),
        ],
    );
    cases.push(("nohandler.mar", vec!["absent.wasm"]));

    raw_zip(
        &dir.join("notorchscript.mar"),
        &[
            RawEntry::stored(m, good.as_bytes()),
            RawEntry::stored("m.pt", b"this is not TorchScript"),
        ],
    );
    cases.push(("notorchscript.mar", vec!["TorchScript"]));

    let with_wasm = manifest("m.pt", "h.wasm", None);
    for (file, wasm, expected) in [
        ("coremodule.mar", CORE_MODULE, "core WebAssembly module"),
        (
            "otherworld.mar",
            OTHER_WORLD_COMPONENT,
            "does not fit the wasmserve:handler",
        ),
        (
            "emptyworld.mar",
            EMPTY_COMPONENT,
            "does not fit the wasmserve:handler",
        ),
    ] {
        raw_zip(
            &dir.join(file),
            &[
                RawEntry::stored(m, with_wasm.as_bytes()),
                RawEntry::stored("m.pt", &model),
                RawEntry::stored("h.wasm", wasm),
            ],
        );
        cases.push((file, vec![expected]));
    }

    let with_yaml = manifest("m.pt", "base_handler", Some("model-config.yaml"));
    for (file, yaml, expected) in [
        ("yaml-type.mar", "batchSize: \"many\"\n", "batchSize"),
        (
            "yaml-memory.mar",
            "handlerMemoryLimitMb: 100000\n",
            "handlerMemoryLimitMb",
        ),
        ("yaml-syntax.mar", "batchSize: [1,\n", "model-config.yaml"),
    ] {
        raw_zip(
            &dir.join(file),
            &[
                RawEntry::stored(m, with_yaml.as_bytes()),
                RawEntry::stored("m.pt", &model),
                RawEntry::stored("model-config.yaml", yaml.as_bytes()),
            ],
        );
        cases.push((file, vec![expected]));
    }

    // Zip bombs: 5 GiB of zeros in about 5 MiB, once declared honestly (zip64) and once
    // declared as 1 KiB.
    let started = Instant::now();
    let (bomb, crc) = deflated_zeros(5 << 10);
    println!(
        "the bomb: {} bytes inflating to 5 GiB, made in {:?}",
        bomb.len(),
        started.elapsed()
    );
    assert!(bomb.len() < 16 << 20);
    raw_zip(
        &dir.join("bomb.mar"),
        &[
            RawEntry::stored(m, good.as_bytes()),
            RawEntry {
                name: "m.pt",
                method: 8,
                data: &bomb,
                crc,
                size: 5 << 30,
                unix_mode: None,
            },
        ],
    );
    cases.push(("bomb.mar", vec!["inflates past"]));
    raw_zip(
        &dir.join("lyingbomb.mar"),
        &[
            RawEntry::stored(m, good.as_bytes()),
            RawEntry {
                name: "m.pt",
                method: 8,
                data: &bomb,
                crc,
                size: 1024,
                unix_mode: None,
            },
        ],
    );
    cases.push((
        "lyingbomb.mar",
        vec!["inflates past", "declared", "damaged"],
    ));
    // The bomb is what it claims: a zip reader sees 5 GiB and inflates its start.
    {
        let mut zip =
            zip::ZipArchive::new(std::fs::File::open(dir.join("bomb.mar")).unwrap()).unwrap();
        let mut entry = zip.by_name("m.pt").unwrap();
        assert_eq!(entry.size(), 5 << 30);
        let n = std::io::copy(&mut (&mut entry).take(64 << 20), &mut std::io::sink()).unwrap();
        assert_eq!(n, 64 << 20);
    }

    // 100,000 empty entries.
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(dir.join("many.mar")).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file(m, opts).unwrap();
        zip.write_all(good.as_bytes()).unwrap();
        zip.start_file("m.pt", opts).unwrap();
        zip.write_all(&model).unwrap();
        for i in 0..100_000 {
            zip.start_file(format!("f{i}"), opts).unwrap();
        }
        zip.finish().unwrap();
    }
    cases.push(("many.mar", vec!["entries"]));

    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        store.path(),
        &["mobilenet.mar"],
        "enable_model_api=true",
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    let listing = |d: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let store_before = listing(dir);

    let mut failures = Vec::new();
    for (file, expected) in &cases {
        let started = Instant::now();
        let (status, body) = json(
            client()
                .post(server.mgmt(&format!("/models?url={file}")))
                .send()
                .unwrap(),
        );
        let took = started.elapsed();
        let message = body["message"].as_str().unwrap_or_default();
        println!("{file}: {status} in {took:?}: {message}");
        if !(400..600).contains(&status) {
            failures.push(format!("{file}: accepted ({status} {body})"));
        } else if !expected.iter().any(|e| message.contains(e)) {
            failures.push(format!(
                "{file}: the message should mention {expected:?}: {body}"
            ));
        }
        // Refused, not served.
        let (status, _) = json(client().get(server.mgmt("/models/evil")).send().unwrap());
        if status != 404 {
            failures.push(format!("{file}: /models/evil answers {status}"));
            let _ = client().delete(server.mgmt("/models/evil")).send();
        }
        let (status, body) = json(server.post("/predictions/mobilenet", kitten_jpg()));
        assert_eq!(status, 200, "after {file}: {body}");
    }

    // Nothing registered, nothing escaped, nothing left extracted.
    let (_, list) = json(client().get(server.mgmt("/models")).send().unwrap());
    assert_eq!(
        list,
        json!({"models": [{"modelName": "mobilenet", "modelUrl": "mobilenet.mar"}]})
    );
    for place in [
        dir.parent().unwrap().to_path_buf(),
        tmp.path().to_path_buf(),
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        std::env::current_dir().unwrap(),
    ] {
        for name in [
            format!("{unique}.txt"),
            format!("{unique}-nested.txt"),
            format!("{unique}-absolute.txt"),
        ] {
            assert!(
                !place.join(&name).exists(),
                "{} escaped the archive",
                place.join(&name).display()
            );
        }
    }
    assert_eq!(listing(dir), store_before, "the model store changed");
    let work: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(work.len(), 1, "one work folder: {work:?}");
    let extracted = listing(&work[0]);
    assert_eq!(
        extracted.len(),
        1,
        "only mobilenet stays extracted: {extracted:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (status, _) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    assert_eq!(status, 200);
}

/// A refused handler leaves no compiled code in the component cache
/// (`WASMSERVE_CACHE`), while an accepted one is cached.
#[test]
fn a_refused_handler_leaves_no_compiled_code_behind() {
    let store = ModelStore::new();
    let cache = tempfile::tempdir().unwrap();
    let model = std::fs::read(asset("models/mobilenet_v2_quantized.pt")).unwrap();
    let with_wasm = manifest("m.pt", "h.wasm", None);
    for (file, wasm) in [
        ("otherworld.mar", OTHER_WORLD_COMPONENT),
        ("emptyworld.mar", EMPTY_COMPONENT),
    ] {
        raw_zip(
            &store.path().join(file),
            &[
                RawEntry::stored("MAR-INF/MANIFEST.json", with_wasm.as_bytes()),
                RawEntry::stored("m.pt", &model),
                RawEntry::stored("h.wasm", wasm),
            ],
        );
    }
    store.hostile("hostile", HOSTILE_YAML);
    let server = Server::start_with_env(
        store.path(),
        &[],
        "enable_model_api=true",
        &[("WASMSERVE_CACHE", cache.path().to_str().unwrap())],
    );
    let compiled = || -> Vec<String> {
        find_files_with(cache.path(), |n| n.ends_with(".cwasm"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    for file in ["otherworld.mar", "emptyworld.mar"] {
        let (status, body) = json(
            client()
                .post(server.mgmt(&format!("/models?url={file}")))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 400, "{file}: {body}");
    }
    let left = compiled();
    let (status, body) = json(
        client()
            .post(server.mgmt("/models?url=hostile.mar"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        compiled().len(),
        left.len() + 1,
        "the good handler is cached"
    );
    assert!(
        left.is_empty(),
        "refused handlers left compiled code in the cache: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Bad and slow clients

/// Opens a connection to `base` (`http://HOST:PORT`) and writes `bytes`.
/// The bytes of a plain-text HTTP/1.1 POST of `body` to `path`, asking the server to close
/// the connection after its answer when `close`.
fn text_post(path: &str, body: &str, close: bool) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
}

fn raw(base: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Everything the server sends on `s` until it closes (or `timeout` passes).
fn read_all(s: &mut TcpStream, timeout: Duration) -> (String, bool) {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = Vec::new();
    let closed = match s.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[test]
fn bad_requests_get_4xx_in_torchserves_words() {
    // The kitten (111 kB) fits.
    let s = serve_hostile("max_request_size=200000", &[]);
    let server = &s.server;
    let post = |content_type: Option<&str>, body: Vec<u8>| {
        let mut req = client().post(server.url("/predictions/hostile")).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        json(req.send().unwrap())
    };

    let (status, body) = post(None, vec![b'x'; 200_001]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], 413);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_request_size"),
        "{body}"
    );

    for (what, content_type, body) in [
        (
            "no boundary",
            "multipart/form-data",
            "--b\r\n\r\nok".to_string(),
        ),
        (
            "truncated",
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nok".to_string(),
        ),
        (
            "another boundary",
            "multipart/form-data; boundary=AAA",
            "--BBB\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nok\r\n--BBB--\r\n"
                .to_string(),
        ),
        (
            "no headers in the part",
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\nok\r\n--XyZ--\r\n".to_string(),
        ),
    ] {
        let (status, answer) = post(Some(content_type), body.into_bytes());
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["code"], 400, "{what}: {answer}");
        println!("multipart, {what}: {}", answer["message"]);
    }

    let (status, body) = json(client().get(server.url("/no/such/route")).send().unwrap());
    assert_eq!(status, 404);
    assert_eq!(
        body["message"],
        "Requested resource is not found, please refer to API document."
    );
    for (method, path) in [
        (reqwest::Method::DELETE, "/ping"),
        (reqwest::Method::GET, "/predictions/hostile"),
        (reqwest::Method::PATCH, "/predictions/hostile/1.0"),
    ] {
        let (status, body) = json(
            client()
                .request(method.clone(), server.url(path))
                .send()
                .unwrap(),
        );
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_eq!(
            body["message"], "Requested method is not allowed, please refer to API document.",
            "{method} {path}"
        );
        assert_eq!(body["type"], "MethodNotAllowedException");
    }

    // Not HTTP, too many headers, a huge target: a 4xx or a hang-up, nothing else.
    let many_headers: String = (0..500).map(|i| format!("X-H-{i}: v\r\n")).collect();
    let long_target = "a".repeat(1 << 20);
    for (what, bytes) in [
        (
            "garbage",
            b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n".to_vec(),
        ),
        (
            "500 headers",
            format!("GET /ping HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
        ),
        (
            "a 1 MiB target",
            format!("GET /{long_target} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        ),
        (
            "a bad Content-Length",
            b"POST /predictions/hostile HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
        ),
    ] {
        let mut s = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
        let _ = s.write_all(&bytes);
        let (answer, closed) = read_all(&mut s, Duration::from_secs(5));
        let status_line = answer.lines().next().unwrap_or("").to_string();
        println!("{what}: {status_line:?}, closed: {closed}");
        assert!(
            status_line.is_empty() || status_line.starts_with("HTTP/1.1 4"),
            "{what}: {status_line}"
        );
        assert!(closed, "{what}: the connection stayed open");
    }
    still_fine(server, "the bad requests");
}

/// A Content-Length over max_request_size is refused at once, before the body comes
/// (TorchServe's aggregator does so), not after client_timeout.
#[test]
fn an_oversized_content_length_is_refused_before_the_body() {
    let s = serve_hostile("max_request_size=200000", &[]);
    let started = Instant::now();
    let mut conn = raw(
        &s.server.base,
        b"POST /predictions/hostile HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
    );
    let (answer, _) = read_all(&mut conn, Duration::from_secs(5));
    println!("{:?} after {:?}", answer.lines().next(), started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.contains("max_request_size"), "{answer:?}");
    still_fine(&s.server, "an oversized Content-Length");
}

/// An answer given before the body was read (an unknown model, a route that does not
/// exist, a wrong method) keeps the connection in step: the rest of the body is read
/// and dropped, and the next request on the same connection gets its own answer. A body
/// too big to be worth reading gets `Connection: close` instead of a broken promise.
#[test]
fn an_error_before_the_body_keeps_the_connection_in_step() {
    let s = serve_hostile("", &[]);
    let body = vec![b'x'; 1 << 20];
    for (what, head, expected) in [
        (
            "an unknown model",
            "POST /predictions/nosuchmodel HTTP/1.1",
            404,
        ),
        ("an unknown route", "POST /no/such/route HTTP/1.1", 404),
        (
            "a wrong method",
            "PATCH /predictions/hostile/1.0 HTTP/1.1",
            405,
        ),
    ] {
        let mut request = format!(
            "{head}\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request.extend_from_slice(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut conn = raw(&s.server.base, &request);
        let (answer, _) = read_all(&mut conn, Duration::from_secs(10));
        let answer = answer.as_bytes();
        let (first, _, used) = next_response(answer).unwrap_or_else(|| panic!("{what}: no answer"));
        let second = next_response(&answer[used..])
            .map(|(st, b, _)| (st, String::from_utf8_lossy(&b).into_owned()));
        println!("{what}: {first}, then {second:?}");
        assert_eq!(first, expected, "{what}");
        let (ping, text) = second
            .unwrap_or_else(|| panic!("{what}: the connection was closed before the next request"));
        assert_eq!(ping, 200, "{what}: {text}");
        assert!(text.contains("Healthy"), "{what}: {text}");
    }

    // Declared over max_request_size: refused at once, and the server says that it
    // closes the connection rather than reading 10 MB it will drop.
    let mut conn = raw(
        &s.server.base,
        b"POST /predictions/hostile HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
    );
    let (answer, closed) = read_all(&mut conn, Duration::from_secs(5));
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed, "the connection stayed open");
    still_fine(&s.server, "errors before the body");
}

#[test]
fn slow_clients_cost_nothing_else_and_are_cut_off() {
    // Long enough that the bounds below, fractions of it, leave a slow machine room.
    let client_timeout = Duration::from_secs(4);
    let s = serve_hostile("client_timeout=4", &[]);
    let server = &s.server;
    still_fine(server, "the start");
    let opened = Instant::now();
    // 100 connections stuck in their headers, 20 stuck in their bodies.
    let mut stalled: Vec<(&str, TcpStream)> = (0..100)
        .map(|_| {
            (
                "half a header",
                raw(
                    &server.base,
                    b"POST /predictions/mobilenet HTTP/1.1\r\nHost: x\r\nContent-Le",
                ),
            )
        })
        .collect();
    stalled.extend((0..20).map(|_| {
        (
            "10 bytes of 100000",
            raw(
                &server.base,
                b"POST /predictions/mobilenet HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
            ),
        )
    }));
    // 5 that trickle a header a byte at a time (slowloris).
    let tricklers: Vec<_> = (0..5)
        .map(|_| {
            let mut conn = raw(&server.base, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            std::thread::spawn(move || {
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(200));
                    if conn.write_all(b"a").is_err() {
                        return started.elapsed();
                    }
                }
                started.elapsed()
            })
        })
        .collect();

    // A normal prediction goes through at once.
    let started = Instant::now();
    let (status, body) = json(server.post("/predictions/mobilenet", kitten_jpg()));
    let took = started.elapsed();
    println!("a prediction beside 125 stalled connections: {took:?}");
    assert_eq!(status, 200, "{body}");
    assert!(
        took < client_timeout,
        "a prediction beside stalled connections took {took:?}: it waited for them"
    );
    still_fine(server, "stalled clients");

    // The server hangs up on every stalled connection once client_timeout passes, and
    // does not wait for a 408's body a second time (that would be 2 × client_timeout):
    // the bound sits between the two.
    let deadline = opened + client_timeout * 7 / 4;
    let mut latest = Duration::ZERO;
    for (what, conn) in &mut stalled {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let (answer, closed) = read_all(conn, left);
        assert!(
            closed,
            "{what}: still open {:?} after it stalled",
            opened.elapsed()
        );
        latest = latest.max(opened.elapsed());
        let status_line = answer.lines().next().unwrap_or("");
        assert!(
            status_line.is_empty() || status_line.contains(" 408 "),
            "{what}: {status_line}"
        );
    }
    println!("the last stalled connection was closed after {latest:?}");
    for t in tricklers {
        let lasted = t.join().unwrap();
        println!("a trickling connection lasted {lasted:?}");
        assert!(
            lasted < client_timeout * 2,
            "a slowloris connection lasted {lasted:?} (client_timeout {client_timeout:?})"
        );
    }
    still_fine(server, "the stalled clients were cut off");
}
