//! Errors the engine returns to transports. The layers below own their errors (`BatchError`,
//! `GenerationError`) and convert with `From`; each transport maps these to its own status codes in one
//! place (`api::http::error`, `api::grpc::status`).

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use ferroserve_models::InputTooLong;

use crate::batching::BatchError;
use crate::generation::GenerationError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("model {0:?} is not served here; GET /v1/models lists the models")]
    ModelNotFound(String),
    #[error("collection {0:?} does not exist; GET /collections lists the collections")]
    CollectionNotFound(String),
    #[error("chain {0:?} is not served here; GET /chains lists the chains")]
    ChainNotFound(String),
    /// A chain step could not use what it got (a model's output that does not parse).
    #[error("{0}")]
    Unprocessable(String),
    /// A service a chain step called answered wrongly or refused the request.
    #[error("{0}")]
    Upstream(String),
    /// A service a chain step called could not be reached (after retries, or its circuit breaker is open).
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// An error in a chain step, naming it; transports answer as for `error`.
    #[error("step {step:?}: {error}")]
    InStep { step: String, error: Box<EngineError> },
    /// The request contradicts what exists (a collection that already exists).
    #[error("{0}")]
    Conflict(String),
    #[error("model {0:?} is unloaded; POST /v2/repository/models/{0}/load loads it")]
    ModelUnloaded(String),
    #[error("model {model:?} is still loading; retry shortly")]
    ModelLoading { model: String },
    #[error("model {model:?} failed to load: {reason}")]
    ModelFailed { model: String, reason: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    InputTooLong(#[from] InputTooLong),
    #[error("model {model:?} is overloaded: its queue is full; retry after {}s", retry_after.as_secs().max(1))]
    Overloaded { model: String, retry_after: Duration },
    #[error("the request's deadline passed before it was served")]
    DeadlineExceeded,
    #[error("not in the cache (the request asked for cache=only)")]
    CacheMiss,
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The error itself, under any chain steps that wrap it (what decides the status).
    pub fn cause(&self) -> &EngineError {
        match self {
            EngineError::InStep { error, .. } => error.cause(),
            other => other,
        }
    }

    /// The message a client sees: what went wrong, without the server's file paths (the log has those).
    pub fn public_message(&self) -> String {
        match self.cause() {
            EngineError::Internal(_) | EngineError::ModelFailed { .. } => without_paths(&self.to_string()),
            _ => self.to_string(),
        }
    }

    /// A short, stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::InStep { error, .. } => error.kind(),
            EngineError::ChainNotFound(_) => "chain_not_found",
            EngineError::ModelUnloaded(_) => "model_unloaded",
            EngineError::Upstream(_) => "upstream_error",
            EngineError::UpstreamUnavailable(_) => "upstream_unavailable",
            EngineError::Unprocessable(_) => "unprocessable",
            EngineError::ModelNotFound(_) => "model_not_found",
            EngineError::CollectionNotFound(_) => "collection_not_found",
            EngineError::Conflict(_) => "conflict",
            EngineError::ModelLoading { .. } => "model_loading",
            EngineError::ModelFailed { .. } => "model_failed",
            EngineError::InvalidInput(_) => "invalid_input",
            EngineError::InputTooLong(_) => "input_too_long",
            EngineError::Overloaded { .. } => "overloaded",
            EngineError::DeadlineExceeded => "deadline_exceeded",
            EngineError::CacheMiss => "cache_miss",
            EngineError::ShuttingDown => "shutting_down",
            EngineError::Internal(_) => "internal",
        }
    }
}

impl From<BatchError> for EngineError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::InvalidInput(m) => EngineError::InvalidInput(m),
            BatchError::Overloaded { model, retry_after } => EngineError::Overloaded { model, retry_after },
            BatchError::DeadlineExceeded => EngineError::DeadlineExceeded,
            BatchError::ShuttingDown => EngineError::ShuttingDown,
            BatchError::LaneFailed(m) => EngineError::Internal(m),
        }
    }
}

impl From<GenerationError> for EngineError {
    fn from(e: GenerationError) -> Self {
        match e {
            GenerationError::InvalidInput(m) => EngineError::InvalidInput(m),
            GenerationError::Overloaded { model, retry_after } => EngineError::Overloaded { model, retry_after },
            GenerationError::DeadlineExceeded => EngineError::DeadlineExceeded,
            GenerationError::ShuttingDown => EngineError::ShuttingDown,
            GenerationError::Failed(m) => EngineError::Internal(m),
        }
    }
}

impl From<crate::chains::ChainError> for EngineError {
    fn from(e: crate::chains::ChainError) -> Self {
        use crate::chains::ChainError;
        match e {
            ChainError::Invalid(m) | ChainError::BadInput(m) => EngineError::InvalidInput(m),
            ChainError::NotFound(name) => EngineError::ChainNotFound(name),
            ChainError::Failed(m) => EngineError::Unprocessable(m),
            ChainError::Storage(m) => EngineError::Internal(m),
        }
    }
}

impl From<crate::chains::RunError<EngineError>> for EngineError {
    fn from(e: crate::chains::RunError<EngineError>) -> Self {
        match e {
            crate::chains::RunError::Chain(e) => e.into(),
            crate::chains::RunError::Step { step, error } => EngineError::InStep { step, error: Box::new(error) },
        }
    }
}

impl From<crate::remote::RemoteError> for EngineError {
    fn from(e: crate::remote::RemoteError) -> Self {
        match e {
            crate::remote::RemoteError::Unavailable(m) => EngineError::UpstreamUnavailable(m),
            crate::remote::RemoteError::Invalid(m) => EngineError::InvalidInput(m),
            other => EngineError::Upstream(other.to_string()),
        }
    }
}

/// `message` with every absolute file path cut to its last component (`/srv/models/m/model.onnx` becomes
/// `model.onnx`), so answers do not show the server's file layout. URLs are left alone.
pub fn without_paths(message: &str) -> String {
    static PATH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(^|[\s"'(=\[])/(?:[^/\s"'()\[\],]+/)+([^/\s"'()\[\],]*)"#).expect("a valid pattern")
    });
    PATH.replace_all(message, "${1}${2}").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_to_file_names() {
        let message = "model \"m\" failed to load: reading /work/models/m/model.onnx: No such file (os error 2)";
        assert_eq!(without_paths(message), "model \"m\" failed to load: reading model.onnx: No such file (os error 2)");
        assert_eq!(without_paths("\"/srv/a/b.toml\" and (/x/y/)"), "\"b.toml\" and ()");
        assert_eq!(without_paths("see http://host/a/b and /single"), "see http://host/a/b and /single");
        assert_eq!(
            EngineError::Internal("writing /data/c/wal.log failed".into()).public_message(),
            "internal error: writing wal.log failed"
        );
        assert!(EngineError::ModelUnloaded("m".into()).public_message().contains("/v2/repository/models/m/load"));
    }
}
