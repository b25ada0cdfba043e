//! A plain HTTP/1.1 keep-alive client on one connection, for the benchmarks: the
//! request's bytes are made once and written as they are, the answer is read by its
//! `content-length` or its chunks, and nothing else runs between (no client runtime,
//! no copies of its own), so that what is timed is the server's.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One connection to `addr`.
pub struct KeepAlive {
    conn: BufReader<TcpStream>,
    addr: String,
}

/// An answer's body, and when its first byte of body came (from the request's write).
pub struct Timed {
    pub body: Vec<u8>,
    pub first_chunk: Duration,
    pub chunks: usize,
}

impl KeepAlive {
    /// Connects to `addr` (`host:port`, or `http://host:port`).
    pub fn connect(addr: &str) -> KeepAlive {
        let addr = addr.trim_start_matches("http://").to_string();
        let conn = TcpStream::connect(&addr).unwrap();
        conn.set_nodelay(true).unwrap();
        KeepAlive {
            conn: BufReader::new(conn),
            addr,
        }
    }

    /// The bytes of a POST of `body` to `path` with `headers` (`name: value` lines).
    pub fn request(&self, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        [head.into_bytes(), body.to_vec()].concat()
    }

    /// Sends `request` (from [`KeepAlive::request`]) and reads its 200 answer.
    pub fn send(&mut self, request: &[u8]) -> Timed {
        let started = Instant::now();
        self.conn.get_mut().write_all(request).unwrap();
        let (mut line, mut length, mut chunked) = (String::new(), None, false);
        self.conn.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        loop {
            line.clear();
            self.conn.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>().unwrap());
            }
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
        }
        if !chunked {
            let mut body = vec![0u8; length.unwrap_or(0)];
            self.conn.read_exact(&mut body).unwrap();
            return Timed {
                body,
                first_chunk: started.elapsed(),
                chunks: 1,
            };
        }
        let (mut body, mut first, mut chunks) = (Vec::new(), None, 0);
        loop {
            line.clear();
            self.conn.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            let mut data = vec![0u8; size + 2];
            self.conn.read_exact(&mut data).unwrap();
            if size == 0 {
                break;
            }
            first.get_or_insert_with(|| started.elapsed());
            body.extend_from_slice(&data[..size]);
            chunks += 1;
        }
        Timed {
            body,
            first_chunk: first.unwrap_or_else(|| started.elapsed()),
            chunks,
        }
    }
}
