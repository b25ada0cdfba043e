//! Handlers that answer in pieces (`send-intermediate`, WIT 0.1.1) over HTTP: the
//! pieces arrive as the chunks of one `/predictions` response, in order, as they are
//! sent; a client that reads slowly holds the handler back (bounded buffering); one
//! that goes away stops it; one that streams without end is stopped by its
//! `responseTimeout`. And a component built against 0.1.0, before streaming, still runs.
//!
//! The chunks are read off the socket with a small HTTP/1.1 client of this file's own,
//! so that their boundaries are seen.

mod common;

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One HTTP/1.1 answer read off the socket, its body chunk by chunk.
struct Answer {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    /// For a body with a `content-length` (not chunked): its length, until read.
    length: Option<usize>,
    done: bool,
}

impl Answer {
    fn post(base: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let addr = base.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        write!(
            conn,
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.write_all(body).unwrap();
        let mut reader = BufReader::new(conn);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap());
        Answer {
            reader,
            status,
            headers,
            length,
            done: false,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding") == Some("chunked")
    }

    /// The next chunk of the body (the whole body when it is not chunked); `None` at
    /// its end.
    fn chunk(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        if let Some(n) = self.length.take() {
            let mut body = vec![0; n];
            self.reader.read_exact(&mut body).unwrap();
            self.done = true;
            return Some(body);
        }
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim_end(), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).unwrap();
        assert_eq!(&data[size..], b"\r\n", "a chunk must end with CRLF");
        data.truncate(size);
        if size == 0 {
            self.done = true;
            return None;
        }
        Some(data)
    }

    fn chunks(mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.chunk()).collect()
    }
}

fn text(chunk: &[u8]) -> String {
    String::from_utf8_lossy(chunk).into_owned()
}

/// The most probable class of a classification `{"label": p, ...}` (most probable first).
fn top1(classes: &Value) -> (String, f64) {
    let (k, v) = classes.as_object().unwrap().iter().next().unwrap();
    (k.clone(), v.as_f64().unwrap())
}

#[test]
fn the_stream_classifier_answers_each_image_of_a_form_as_its_own_chunk() {
    let store = ModelStore::new();
    let vit = asset("models/vit4mnist.ptl");
    store.archive(
        "digits",
        &vit,
        guest("mnist_handler").to_str().unwrap(),
        &[],
    );
    store.digit_streamer();
    store.archive(
        "kittens",
        &asset("models/mobilenet_v2_quantized.pt"),
        guest("stream_classifier").to_str().unwrap(),
        &[&asset("images/index_to_name.json")],
    );
    let server = Server::start(
        store.path(),
        &[
            "digits=digits.mar",
            "streamer=streamer.mar",
            "kittens=kittens.mar",
        ],
        "",
    );
    // The ten digits, 9 first, as the fields of one form.
    let fields: Vec<(String, Vec<u8>)> = (0..10)
        .rev()
        .map(|d| {
            let png = std::fs::read(asset(&format!("images/mnist/{d}.png"))).unwrap();
            (format!("digit{d}"), png)
        })
        .collect();
    let (content_type, body) = multipart(&fields);
    let answer = Answer::post(&server.base, "/predictions/streamer", &content_type, &body);
    assert_eq!(answer.status, 200);
    assert!(answer.chunked(), "{:?}", answer.headers);
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    let chunks = answer.chunks();
    assert_eq!(
        chunks.len(),
        fields.len(),
        "one chunk per image: {chunks:?}"
    );
    for (i, (chunk, (name, png))) in chunks.iter().zip(&fields).enumerate() {
        let line: Value = serde_json::from_slice(chunk).unwrap();
        assert_eq!(line["image"], *name);
        assert_eq!(line["index"], i);
        assert_eq!(line["of"], fields.len());
        assert_eq!(line["classes"].as_object().unwrap().len(), 3);
        // The digit the MNIST example handler finds in the same image alone.
        let (status, alone) = json(server.post("/predictions/digits", png.clone()));
        assert_eq!(status, 200);
        let digit = top1(&line["classes"]).0;
        assert_eq!(digit, alone.to_string(), "{name}: {line} vs {alone}");
        assert_eq!(digit, name.trim_start_matches("digit"), "{name}: {line}");
    }
    // One image: no piece before the final answer, so an ordinary response.
    let one = Answer::post(
        &server.base,
        "/predictions/kittens",
        "image/jpeg",
        &kitten_jpg(),
    );
    assert_eq!(one.status, 200);
    assert!(!one.chunked() && one.length.is_some(), "{:?}", one.headers);
    let line: Value = serde_json::from_slice(&one.chunks()[0]).unwrap();
    assert_eq!(top1(&line["classes"]).0, "tabby");
    // A form with a field that is not an image: the request fails, with the field named.
    let png = fields[0].1.clone();
    let (content_type, body) = multipart(&[("good", png), ("junk", b"no".to_vec())]);
    let bad = Answer::post(&server.base, "/predictions/streamer", &content_type, &body);
    assert_eq!(bad.status, 400);
    assert!(text(&bad.chunks().concat()).contains("junk"));
}

/// The hostile handler served as `hostile`, with `yaml` as its model-config.yaml.
fn hostile_server(store: &ModelStore, yaml: &str, env: &[(&str, &str)]) -> Server {
    store.hostile("hostile", yaml);
    Server::start_with_env(store.path(), &["hostile=hostile.mar"], "", env)
}

#[test]
fn pieces_arrive_as_chunks_in_order_from_preprocess_and_postprocess() {
    let store = ModelStore::new();
    let server = hostile_server(&store, "minWorkers: 1\nmaxWorkers: 1\n", &[]);
    let answer = Answer::post(
        &server.base,
        "/predictions/hostile",
        "text/plain",
        b"stream 5",
    );
    assert_eq!(answer.status, 200);
    assert!(answer.chunked());
    assert_eq!(answer.header("content-type"), Some("text/plain"));
    let chunks: Vec<String> = answer.chunks().iter().map(|c| text(c)).collect();
    let mut want: Vec<String> = (0..5).map(|i| format!("piece {i}\n")).collect();
    want.push("done 5\n".into());
    assert_eq!(chunks, want);
    let early = Answer::post(
        &server.base,
        "/predictions/hostile",
        "text/plain",
        b"streamearly",
    );
    let chunks: Vec<String> = early.chunks().iter().map(|c| text(c)).collect();
    assert_eq!(chunks, ["piece 0\n", "piece 1\n", "done 2\n"]);
    // Over KServe v2 (one answer asked for) the pieces are dropped, the final answer
    // stays.
    let v2 = serde_json::json!({"inputs": [{"name": "body", "datatype": "BYTES", "shape": [1], "data": ["stream 3"]}]});
    let (status, resp) = json(
        client()
            .post(server.url("/v2/models/hostile/infer"))
            .json(&v2)
            .send()
            .unwrap(),
    );
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["outputs"][0]["data"][0], "done 3\n");
}

#[test]
fn a_slow_client_holds_the_handler_back_and_gets_every_piece() {
    let store = ModelStore::new();
    let server = hostile_server(
        &store,
        "minWorkers: 1\nmaxWorkers: 1\nresponseTimeout: 60\n",
        &[],
    );
    let before = vm_rss_mib(server.pid());
    // 2,000 pieces of 64 KiB: 125 MiB in all, of which the server may hold a few.
    let (pieces, size) = (2000usize, 65536usize);
    let mut answer = Answer::post(
        &server.base,
        "/predictions/hostile",
        "text/plain",
        format!("stream {pieces} {size}").as_bytes(),
    );
    assert_eq!(answer.status, 200);
    std::thread::sleep(Duration::from_secs(3));
    let held = vm_rss_mib(server.pid()) - before;
    println!("RSS grew by {held:.1} MiB while the client read nothing");
    assert!(
        held < 48.0,
        "the server buffered {held:.1} MiB for a client that read nothing"
    );
    assert!(
        !server.log().contains("hostile stream stopped"),
        "{}",
        server.log()
    );
    let mut n = 0;
    while let Some(chunk) = answer.chunk() {
        if n < pieces {
            assert_eq!(chunk.len(), size + 1, "piece {n}");
            assert!(chunk.starts_with(format!("piece {n}").as_bytes()));
        } else {
            assert_eq!(text(&chunk), format!("done {pieces}\n"));
        }
        n += 1;
    }
    assert_eq!(n, pieces + 1);
}

#[test]
fn a_client_that_goes_away_stops_the_handler() {
    let store = ModelStore::new();
    let server = hostile_server(
        &store,
        "minWorkers: 1\nmaxWorkers: 1\nresponseTimeout: 60\n",
        &[],
    );
    let mut answer = Answer::post(
        &server.base,
        "/predictions/hostile",
        "text/plain",
        b"stream 1000000 1024",
    );
    for _ in 0..10 {
        answer.chunk().unwrap();
    }
    drop(answer);
    assert!(
        server.wait_for_log("hostile stream stopped after", Duration::from_secs(10)),
        "the handler went on streaming for nobody:\n{}",
        server.log()
    );
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("hostile stream stopped after"))
        .unwrap();
    assert!(line.contains("the client went away"), "{line}");
    // The lane is free for the next request.
    let (status, body) = hostile_command(&server, "hostile", "ok");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_handler_that_streams_forever_is_stopped_by_its_response_timeout() {
    let store = ModelStore::new();
    let server = hostile_server(
        &store,
        "minWorkers: 1\nmaxWorkers: 1\nresponseTimeout: 2\n",
        &[],
    );
    let started = Instant::now();
    let answer = Answer::post(
        &server.base,
        "/predictions/hostile",
        "text/plain",
        b"streamforever",
    );
    assert_eq!(answer.status, 200);
    let chunks = answer.chunks();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let last = text(chunks.last().unwrap());
    assert!(last.contains("responseTimeout"), "{last}");
    assert!(chunks.len() > 1, "some pieces came first");
    // Its instance was replaced: the next request is served.
    let (status, body) = hostile_command(&server, "hostile", "ok");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_component_built_against_wit_0_1_0_still_runs() {
    let store = ModelStore::new();
    let dir = tempfile::tempdir().unwrap();
    let model = doubling_model(dir.path());
    store.archive(
        "legacy",
        &model,
        guest("legacy_handler").to_str().unwrap(),
        &[],
    );
    let server = Server::start(store.path(), &["legacy=legacy.mar"], "");
    let (status, body) = json(server.post("/predictions/legacy", b"12345".to_vec()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "0.1.0", "{body}");
    assert_eq!(body["outputs"][0].as_f64(), Some(10.0), "{body}");
}
