//! Text to token ids for encoder models, with the model's input limit enforced or applied.
//!
//! Padding is not done here: the lane pads a whole batch to its longest sequence when it builds tensors,
//! so requests batched together never pay for a fixed pad length (MiniLM's `tokenizer.json` pads to 128).

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use crate::error::ModelError;

/// An input longer than the model takes, with `truncate` off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input {index} has {tokens} tokens, more than the model's limit of {limit}; shorten it or set truncate=true")]
pub struct InputTooLong {
    pub index: usize,
    pub tokens: usize,
    pub limit: usize,
}

/// A tokenizer that adds the model's special tokens and knows its length limit.
#[derive(Clone)]
pub struct TextTokenizer {
    plain: Tokenizer,
    truncating: Tokenizer,
    limit: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; `limit` is the most tokens one input may have, special tokens included.
    pub fn from_file(path: &Path, limit: usize) -> Result<Self, ModelError> {
        let mut plain =
            Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        plain.with_padding(None);
        plain.with_truncation(None).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut truncating = plain.clone();
        truncating
            .with_truncation(Some(TruncationParams { max_length: limit, ..Default::default() }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(TextTokenizer { plain, truncating, limit })
    }

    /// The most tokens one input may have.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Token ids of each text, special tokens included. Over-long inputs are cut to the limit when
    /// `truncate` is set, else refused with the index of the first one.
    pub fn encode(&self, texts: &[String], truncate: bool) -> Result<Result<Vec<Vec<u32>>, InputTooLong>, ModelError> {
        let mut out = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let encoding = self.plain.encode(text.as_str(), true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            let ids = encoding.get_ids();
            if ids.len() <= self.limit {
                out.push(ids.to_vec());
            } else if truncate {
                let encoding =
                    self.truncating.encode(text.as_str(), true).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                out.push(encoding.get_ids().to_vec());
            } else {
                return Ok(Err(InputTooLong { index, tokens: ids.len(), limit: self.limit }));
            }
        }
        Ok(Ok(out))
    }
}
