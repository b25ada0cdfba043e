//! The core's errors in TorchServe's words: its body `{"code", "type", "message"}`,
//! its status codes and its exception names.

use hyper::{Response, StatusCode};

use crate::core::Error;
use crate::http::{Body, json_response};

/// TorchServe's status and exception name for `e`.
pub fn classify(e: &Error) -> (u16, &'static str) {
    match e {
        Error::ModelNotFound(_) | Error::ArchiveNotFound(_) => (404, "ModelNotFoundException"),
        Error::VersionNotFound { .. } => (404, "ModelVersionNotFoundException"),
        Error::WorkflowNotFound(_) => (404, "WorkflowNotFoundException"),
        Error::InvalidInput(_) => (400, "BadRequestException"),
        // TorchServe answers a missing or wrong key with 400.
        Error::InvalidKey => (400, "InvalidKeyException"),
        Error::ModelApiDisabled => (405, "MethodNotAllowedException"),
        Error::Conflict(_) => (409, "ConflictStatusException"),
        Error::FileExists(_) => (409, "FileAlreadyExistsException"),
        Error::Download(_) => (400, "DownloadArchiveException"),
        Error::PayloadTooLarge(_) => (413, "RequestEntityTooLargeException"),
        Error::ClientTimeout(_) => (408, "RequestTimeoutException"),
        Error::Unavailable(_) => (503, "ServiceUnavailableException"),
        // The prediction path answers with the job's status; TorchServe types them all
        // InternalServerException, except the client's own mistakes.
        Error::Prediction { status, .. } if (400..500).contains(status) => {
            (*status, "BadRequestException")
        }
        Error::Prediction { status, .. } => (*status, "InternalServerException"),
        Error::NotFound(_) => (404, "ResourceNotFoundException"),
        Error::MethodNotAllowed(_) => (405, "MethodNotAllowedException"),
        Error::Unsupported(_) => (501, "InternalServerException"),
        Error::Internal(_) => (500, "InternalServerException"),
    }
}

/// The response carrying `e`.
pub fn response(e: Error) -> Response<Body> {
    let (code, _) = classify(&e);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &body(&e))
}

/// TorchServe's error body for `e`: `{"code", "type", "message"}`.
pub fn body(e: &Error) -> serde_json::Value {
    let (code, kind) = classify(e);
    serde_json::json!({"code": code, "type": kind, "message": e.to_string()})
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &serde_json::json!({"code": status.as_u16(), "type": kind, "message": message}),
    )
}

/// 404 for a route that does not exist, in TorchServe's words.
pub fn not_found() -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        "Requested resource is not found, please refer to API document.",
    )
}

/// 405 for a known route with the wrong method, in TorchServe's words.
pub fn method_not_allowed() -> Response<Body> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        "Requested method is not allowed, please refer to API document.",
    )
}
