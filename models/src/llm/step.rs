//! The interface between a generation scheduler and a language model: one forward step over a batch of
//! sequences, each with its own KV state. The scheduler (in the server) owns admission, budgets and
//! cancellation and is written against this trait, so it can be tested with a scripted model.

use crate::error::ModelError;

/// One sequence's keys and values, as the scheduler and the prefix cache handle them.
pub trait KvState: Send + Sized {
    /// Tokens held.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes allocated.
    fn bytes(&self) -> usize;
    /// A private copy of the first `len` tokens.
    fn prefix(&self, len: usize) -> Result<Self, ModelError>;
}

/// One sequence's part of a forward pass: the tokens that follow what its cache holds.
pub struct SeqStep<'a, C> {
    pub tokens: &'a [u32],
    pub cache: &'a mut C,
    /// Whether the logits after the last token are wanted (not for a prompt chunk that is not the last).
    pub want_logits: bool,
}

/// A model the scheduler can step.
pub trait StepModel: Send + Sync + 'static {
    type Cache: KvState;

    /// An empty cache for one new sequence.
    fn new_cache(&self) -> Self::Cache;

    /// Runs one step for every sequence in `batch`: appends their tokens to their caches and returns, for
    /// each sequence, the logits after its last token (`vocab` floats) when it wants them, in order.
    fn forward(&self, batch: &mut [SeqStep<'_, Self::Cache>]) -> Result<Vec<Option<Vec<f32>>>, ModelError>;
}
