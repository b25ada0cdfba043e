//! Reading a request body into the parts a handler sees, as TorchServe does: a
//! multipart form gives one part per field, a url-encoded form one part per key, and
//! any other body is one part named `body`.

use super::client_body::ClientBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{CONTENT_TYPE, HeaderMap};

use crate::core::Error;
use crate::sandbox::Part;

/// Reads the whole body, failing with 413 past `limit` bytes and with 408 when the
/// client takes longer than `timeout` to send it.
pub async fn read_limited(
    body: ClientBody,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Error> {
    // A declared length over the limit is refused before any of the body is read.
    if hyper::body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(too_large(limit));
    }
    let Ok(read) = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await else {
        return Err(Error::ClientTimeout(timeout.as_secs()));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit))
        }
        Err(e) => Err(Error::invalid(format!("cannot read the request body: {e}"))),
    }
}

fn too_large(limit: usize) -> Error {
    Error::PayloadTooLarge(limit)
}

/// The most fields a url-encoded or multipart form may have (netty's
/// `HttpPostRequestDecoder` default, which TorchServe's frontend uses): counted before
/// anything is allocated for them.
pub const MAX_FORM_FIELDS: usize = 128;

fn too_many_fields() -> Error {
    Error::invalid(format!(
        "the form has more than {MAX_FORM_FIELDS} fields; send the input as one field or as the raw body"
    ))
}

/// Splits `body` into parts according to its content type.
pub async fn parts(headers: &HeaderMap, body: Bytes) -> Result<Vec<Part>, Error> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mime = content_type.as_deref().map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match mime.as_deref() {
        Some("multipart/form-data") => {
            multipart(content_type.as_deref().unwrap_or_default(), body).await
        }
        // `curl --data-binary @file` sends a file as a form: bytes no form can hold
        // (outside printable ASCII), or text without any `key=value`, mean the raw
        // body was meant. The fields of what is a form are counted first.
        Some("application/x-www-form-urlencoded") if !form_bytes(&body) => {
            Ok(raw(content_type, body))
        }
        Some("application/x-www-form-urlencoded") => {
            if body.split(|&b| b == b'&').nth(MAX_FORM_FIELDS).is_some() {
                return Err(too_many_fields());
            }
            if !body.contains(&b'=') {
                return Ok(raw(content_type, body));
            }
            Ok(urlencoded(&body))
        }
        _ => Ok(raw(content_type, body)),
    }
}

/// Whether a body sent as `application/x-www-form-urlencoded` can be one: printable
/// ASCII (a form percent-encodes everything else).
fn form_bytes(body: &[u8]) -> bool {
    body.iter()
        .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n'))
}

/// The whole body as the one part `body`.
fn raw(content_type: Option<String>, body: Bytes) -> Vec<Part> {
    vec![Part {
        name: "body".into(),
        content_type,
        data: body.to_vec(),
    }]
}

fn urlencoded(body: &[u8]) -> Vec<Part> {
    form_urlencoded::parse(body)
        .map(|(k, v)| Part {
            name: k.into_owned(),
            content_type: None,
            data: v.into_owned().into_bytes(),
        })
        .collect()
}

async fn multipart(content_type: &str, body: Bytes) -> Result<Vec<Part>, Error> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| Error::invalid(format!("malformed multipart request: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(Error::invalid(format!("malformed multipart request: {e}")));
            }
        };
        if parts.len() == MAX_FORM_FIELDS {
            return Err(too_many_fields());
        }
        let name = field.name().unwrap_or("body").to_string();
        let content_type = field.content_type().map(|m| m.to_string());
        let data = field
            .bytes()
            .await
            .map_err(|e| Error::invalid(format!("malformed multipart request: {e}")))?;
        parts.push(Part {
            name,
            content_type,
            data: data.to_vec(),
        });
    }
    Ok(parts)
}
