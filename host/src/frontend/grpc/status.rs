//! The core's errors as gRPC status codes, one mapping for every gRPC service (as
//! TorchServe's gRPC frontend maps its exceptions): not found `NOT_FOUND`, the client's
//! mistake `INVALID_ARGUMENT`, a missing key `PERMISSION_DENIED`, too large
//! `RESOURCE_EXHAUSTED`, no worker `UNAVAILABLE`, else `INTERNAL`. The message is the
//! core's, which says what went wrong and what to do.

use tonic::{Code, Status};

use crate::core::Error;

/// The gRPC code of `e`.
pub fn code(e: &Error) -> Code {
    match e {
        Error::ModelNotFound(_)
        | Error::VersionNotFound { .. }
        | Error::ArchiveNotFound(_)
        | Error::WorkflowNotFound(_)
        | Error::NotFound(_) => Code::NotFound,
        Error::InvalidInput(_) | Error::Download(_) => Code::InvalidArgument,
        Error::InvalidKey | Error::ModelApiDisabled => Code::PermissionDenied,
        Error::Conflict(_) | Error::FileExists(_) => Code::AlreadyExists,
        Error::PayloadTooLarge(_) => Code::ResourceExhausted,
        Error::ClientTimeout(_) => Code::DeadlineExceeded,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Prediction { status, .. } => http_code(*status),
        Error::MethodNotAllowed(_) | Error::Unsupported(_) => Code::Unimplemented,
        Error::Internal(_) => Code::Internal,
    }
}

/// The gRPC code of an HTTP status (a handler's error, or its answer's status).
pub fn http_code(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        401 | 403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        413 => Code::ResourceExhausted,
        429 | 503 => Code::Unavailable,
        400..=499 => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

/// `e` as a gRPC status.
pub fn status(e: Error) -> Status {
    Status::new(code(&e), e.to_string())
}

/// A handler's answer with an error status (4xx, 5xx) as a gRPC status: its body is
/// the message.
pub fn handler_status(status: u16, body: &[u8]) -> Status {
    Status::new(
        http_code(status),
        format!(
            "the handler answered {status}: {}",
            String::from_utf8_lossy(body).trim()
        ),
    )
}

/// What tonic says of a request it could not decode, as the client's mistake: a
/// malformed message is `INVALID_ARGUMENT` (tonic answers `INTERNAL`), one over the
/// size limit `RESOURCE_EXHAUSTED`, each saying what to fix.
pub fn decoding(s: Status) -> Status {
    match classify_decoding(s.code(), s.message()) {
        Some((code, message)) => Status::new(code, message),
        None => s,
    }
}

/// The code and message of a decoding failure (`None`: not one).
pub fn classify_decoding(code: Code, message: &str) -> Option<(Code, String)> {
    if code == Code::Internal && message.starts_with("failed to decode Protobuf message") {
        return Some((
            Code::InvalidArgument,
            format!("the request is not a valid protobuf message of this call's type ({message})"),
        ));
    }
    if message.contains("message length too large") {
        return Some((
            Code::ResourceExhausted,
            format!("{message}: the server's max_request_size bounds every request message"),
        ));
    }
    None
}
