//! The one error type of the core: what went wrong, by meaning, never by wire format.
//! Each frontend maps it to its own: TorchServe's `{"code", "type", "message"}`
//! (`frontend::torchserve::error`), KServe's `{"error"}` (`frontend::kserve`), later
//! a gRPC status. The shared HTTP layer (authorization, body limits) returns it too,
//! so that those answers come in the format of the API they were sent to.

use crate::registry::{LookupError, RegisterError, RemoveError, ScaleError};

/// Why a core operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No model of that name is served.
    #[error("Model not found: {0}")]
    ModelNotFound(String),
    /// The model is served, but not that version.
    #[error("Model version: {version} does not exist for model: {model}")]
    VersionNotFound { model: String, version: String },
    /// No workflow of that name is registered.
    #[error("Workflow not found: {0}")]
    WorkflowNotFound(String),
    /// A registration names an archive that is not there.
    #[error("Model not found in model store: {0}")]
    ArchiveNotFound(String),
    /// The request itself is wrong (a parameter, the body, a tensor): the client's to fix.
    #[error("{0}")]
    InvalidInput(String),
    /// The request carried no valid key.
    #[error(
        "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
    )]
    InvalidKey,
    /// Registration and unregistration are switched off.
    #[error(
        "Model API disabled: start the server with --enable-model-api (or enable_model_api=true) to register and unregister models"
    )]
    ModelApiDisabled,
    /// That model version is already registered.
    #[error("{0}")]
    Conflict(String),
    /// A download would overwrite an archive already in the model store.
    #[error("{0}")]
    FileExists(String),
    /// A registration's archive could not be downloaded.
    #[error("{0}")]
    Download(String),
    /// The body is over `max_request_size`.
    #[error("The request body exceeds max_request_size ({0} bytes)")]
    PayloadTooLarge(usize),
    /// The body did not arrive within `client_timeout`.
    #[error("The request body did not arrive within client_timeout ({0} s)")]
    ClientTimeout(u64),
    /// No worker can take the request now (none ready, queue full, timed out).
    #[error("{0}")]
    Unavailable(String),
    /// The request reached a worker and failed there: the handler's own status and
    /// message, 500 for a crashed handler, 400 for inputs the forward refused.
    #[error("{message}")]
    Prediction { status: u16, message: String },
    /// A path that names no endpoint (for frontends whose errors have one format).
    #[error("{0}")]
    NotFound(String),
    /// A known path with the wrong method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Something the protocol has but this server does not do.
    #[error("{0}")]
    Unsupported(String),
    /// What should not happen (a task that panicked, a file that cannot be written).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidInput(message.into())
    }

    pub fn internal(message: impl std::fmt::Display) -> Error {
        Error::Internal(message.to_string())
    }

    /// The HTTP status this error has in every protocol that does not say otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Error::ModelNotFound(_)
            | Error::VersionNotFound { .. }
            | Error::ArchiveNotFound(_)
            | Error::WorkflowNotFound(_)
            | Error::NotFound(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::InvalidInput(_) | Error::Download(_) => 400,
            Error::InvalidKey => 401,
            Error::ModelApiDisabled => 405,
            Error::ClientTimeout(_) => 408,
            Error::Conflict(_) | Error::FileExists(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::Unavailable(_) => 503,
            Error::Prediction { status, .. } => *status,
            Error::Unsupported(_) => 501,
            Error::Internal(_) => 500,
        }
    }
}

impl From<LookupError> for Error {
    fn from(e: LookupError) -> Error {
        match e {
            LookupError::ModelNotFound(m) => Error::ModelNotFound(m),
            LookupError::VersionNotFound { model, version } => {
                Error::VersionNotFound { model, version }
            }
        }
    }
}

impl From<ScaleError> for Error {
    /// A scaling that does not fit is the client's to change (with the numbers); a
    /// worker that failed to start is the server's.
    fn from(e: ScaleError) -> Error {
        match e {
            e @ ScaleError::Full { .. } => Error::InvalidInput(e.to_string()),
            e => Error::Internal(e.to_string()),
        }
    }
}

impl From<RegisterError> for Error {
    fn from(e: RegisterError) -> Error {
        match e {
            RegisterError::Conflict(m) => Error::Conflict(m),
            RegisterError::Load(e) => Error::InvalidInput(e.to_string()),
            RegisterError::Scale(e) => e.into(),
        }
    }
}

impl From<RemoveError> for Error {
    fn from(e: RemoveError) -> Error {
        match e {
            RemoveError::Lookup(e) => e.into(),
            e @ RemoveError::DefaultVersion(_) => Error::InvalidInput(e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Error {
        Error::Internal(format!("a server task failed: {e}"))
    }
}
