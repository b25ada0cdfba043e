//! Fuzzes splitting an inference request's body into parts
//! (`wasmserve::api::body::parts`), as the server does for `POST /predictions/...`.
//!
//! The first input byte picks the `Content-Type`:
//!
//! | byte % 6 | Content-Type                                                  |
//! |----------|---------------------------------------------------------------|
//! | 0        | `multipart/form-data; boundary=fuzzboundary`                  |
//! | 1        | the input's bytes up to the first `\n` (any header value)     |
//! | 2        | `application/x-www-form-urlencoded`                           |
//! | 3        | `application/json`                                            |
//! | 4        | `text/plain`                                                  |
//! | 5        | no header                                                     |
//!
//! The rest is the body. Checks, beyond "no panic": a body that is neither a form nor
//! multipart comes back whole as the one part `body`, with its content type, and a
//! multipart body's parts never hold more bytes than the body.

#![no_main]

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

pub const BOUNDARY: &str = "fuzzboundary";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body): (Option<HeaderValue>, &[u8]) = match selector % 6 {
        0 => (
            Some(HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}")).unwrap()),
            rest,
        ),
        1 => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (value, body) = rest.split_at(end);
            let body = body.get(1..).unwrap_or(&[]);
            match HeaderValue::from_bytes(value) {
                Ok(v) => (Some(v), body),
                Err(_) => return,
            }
        }
        2 => (Some(HeaderValue::from_static("application/x-www-form-urlencoded")), rest),
        3 => (Some(HeaderValue::from_static("application/json")), rest),
        4 => (Some(HeaderValue::from_static("text/plain")), rest),
        _ => (None, rest),
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = &content_type {
        headers.insert(CONTENT_TYPE, v.clone());
    }
    let result = futures_executor::block_on(wasmserve::api::body::parts(
        &headers,
        Bytes::copy_from_slice(body),
    ));

    let mime = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match mime.as_deref() {
        Some("multipart/form-data") => {
            if let Ok(parts) = result {
                let total: usize = parts.iter().map(|p| p.data.len()).sum();
                assert!(total <= body.len(), "multipart parts hold more than the body");
            }
        }
        Some("application/x-www-form-urlencoded") => {
            result.expect("a url-encoded form always parses");
        }
        _ => {
            let parts = result.expect("a plain body always parses");
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].name, "body");
            assert_eq!(parts[0].data, body);
            assert_eq!(
                parts[0].content_type.as_deref(),
                content_type.as_ref().and_then(|v| v.to_str().ok())
            );
        }
    }
});
