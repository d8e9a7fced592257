//! The embedding-model interface that lanes drive. Backends (`candle_bert`, `onnx`) implement it; loading
//! a model for a lane lives in `load`, so this trait depends on no backend.

use crate::error::ModelError;

/// An encoder that turns token-id sequences into pooled vectors. One instance belongs to one lane;
/// `&mut self` lets backends whose sessions are not shareable (ONNX Runtime) implement it too.
pub trait Embedder: Send {
    /// Embeds a batch of token-id sequences (special tokens included, not padded). Returns one pooled,
    /// not yet normalized vector per sequence, in order.
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError>;
}

/// A batch padded to its longest sequence: row-major ids and attention mask (1 real, 0 padding), as `T`.
pub(crate) struct Padded<T> {
    pub ids: Vec<T>,
    pub mask: Vec<T>,
    pub longest: usize,
}

/// Pads every sequence of `batch` with `pad_id` to the longest one.
pub(crate) fn pad_batch<T: From<u32> + Copy>(batch: &[&[u32]], pad_id: u32) -> Padded<T> {
    let longest = batch.iter().map(|s| s.len()).max().unwrap_or(0);
    let (pad, one, zero) = (T::from(pad_id), T::from(1), T::from(0));
    let mut ids = Vec::with_capacity(batch.len() * longest);
    let mut mask = Vec::with_capacity(batch.len() * longest);
    for seq in batch {
        ids.extend(seq.iter().map(|&t| T::from(t)));
        ids.extend(std::iter::repeat_n(pad, longest - seq.len()));
        mask.extend(std::iter::repeat_n(one, seq.len()));
        mask.extend(std::iter::repeat_n(zero, longest - seq.len()));
    }
    Padded { ids, mask, longest }
}
