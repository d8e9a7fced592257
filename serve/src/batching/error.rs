//! Errors of the batching layer; the engine turns them into its own with `From`.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The request cannot be queued as asked (no sequences, a priority the model does not have).
    #[error("{0}")]
    InvalidInput(String),
    #[error("model {model:?} is overloaded: its queue is full; retry after {}s", retry_after.as_secs())]
    Overloaded { model: String, retry_after: Duration },
    #[error("the request's deadline passed before it was served")]
    DeadlineExceeded,
    #[error("the model's queue is closed")]
    ShuttingDown,
    /// The lane's forward pass failed or panicked.
    #[error("lane failed: {0}")]
    LaneFailed(String),
}
