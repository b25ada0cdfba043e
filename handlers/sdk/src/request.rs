//! Requests, responses and errors: TorchServe's input conventions on the request side,
//! JSON responses and status-carrying errors on the way out.

use base64::Engine as _;

use crate::{Error, Part, Request, Response};

impl Request {
    /// The part named `name`, if the request has one.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// The request's input as TorchServe handlers read it: the `data` part, else the
    /// `body` part, else the only part there is. Fails with 400 when there is none.
    pub fn input(&self) -> Result<&[u8], Error> {
        let part = self
            .part("data")
            .or_else(|| self.part("body"))
            .or_else(|| {
                if self.parts.len() == 1 {
                    self.parts.first()
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                Error::bad_request("the request has no input: send a body or a `data` field")
            })?;
        if part.data.is_empty() {
            return Err(Error::bad_request("the request body is empty"));
        }
        Ok(&part.data)
    }

    /// The input's bytes in any of TorchServe's forms: the raw bytes; or, when the input
    /// is JSON, a base64 string (`"…"`, `{"data": "…"}` or `{"body": "…"}`), decoded.
    pub fn input_bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
        let raw = self.input()?;
        if let Some(text) = json_string(raw) {
            return decode_base64(text.as_bytes())
                .map(std::borrow::Cow::Owned)
                .ok_or_else(|| Error::bad_request("the JSON input is not a base64 string"));
        }
        Ok(std::borrow::Cow::Borrowed(raw))
    }

    /// The input as text: a JSON string (`"…"`, `{"data": "…"}`, `{"text": "…"}` or
    /// `{"body": "…"}`), else the raw bytes as UTF-8. Fails with 400 when not UTF-8.
    pub fn input_text(&self) -> Result<String, Error> {
        let raw = self.input()?;
        if let Some(text) = json_string(raw) {
            return Ok(text);
        }
        String::from_utf8(raw.to_vec())
            .map_err(|_| Error::bad_request("the input is not UTF-8 text"))
    }

    /// The input parsed as JSON. Fails with 400 when it is not JSON.
    pub fn input_json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(self.input()?)
            .map_err(|e| Error::bad_request(format!("the input is not valid JSON: {e}")))
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The string a JSON input carries: the document itself when it is a string, or its
/// `data`, `text` or `body` field. `None` when `raw` is not such JSON.
fn json_string(raw: &[u8]) -> Option<String> {
    let first = raw.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'"' && *first != b'{' {
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(raw).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(mut m) => {
            ["data", "text", "body"]
                .iter()
                .find_map(|k| match m.remove(*k) {
                    Some(serde_json::Value::String(s)) => Some(s),
                    _ => None,
                })
        }
        _ => None,
    }
}

/// Decodes `data` as base64 (standard or URL-safe alphabet, with or without padding,
/// surrounding whitespace and quotes ignored), or returns `None` when it is not base64.
pub fn decode_base64(data: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?.trim().trim_matches('"');
    if text.is_empty() {
        return None;
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(text).ok())
}

impl Response {
    /// A 200 response with `value` serialised as JSON. Numbers made with
    /// [`crate::output::number`] keep `NaN`, `Infinity` and `-Infinity` as Python's
    /// `json.dumps` writes them (TorchServe's answers); other non-finite floats become
    /// `null`, as serde_json writes them.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Response, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("cannot serialise the response: {e}")))?;
        let body = crate::output::write_non_finite(body);
        Ok(Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        })
    }

    /// A 200 response with raw bytes of the given content type.
    pub fn bytes(content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }
}

impl Error {
    /// An error with any HTTP status.
    pub fn new(status: u16, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// 400: the client sent something the handler cannot use.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(400, message)
    }

    /// 500: the handler or the model did something unexpected.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(500, message)
    }
}
