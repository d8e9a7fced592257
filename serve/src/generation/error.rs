//! Errors of the generation layer; the engine turns them into its own with `From`.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GenerationError {
    /// The request cannot be served as asked (it needs more KV memory than the model has).
    #[error("{0}")]
    InvalidInput(String),
    #[error("model {model:?} is overloaded: too many requests wait for a slot; retry after {}s", retry_after.as_secs())]
    Overloaded { model: String, retry_after: Duration },
    #[error("the request's deadline passed before a slot was free")]
    DeadlineExceeded,
    #[error("the model's scheduler has stopped")]
    ShuttingDown,
    /// A forward step or detokenization failed.
    #[error("generation failed: {0}")]
    Failed(String),
}
