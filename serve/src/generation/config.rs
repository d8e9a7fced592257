//! The scheduling and memory settings of a generation model (`[generation]` of its repository file).

use serde::Deserialize;

/// How a generation model schedules sequences and spends memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationConfig {
    /// Most sequences generating at once (each decode step runs them as one batch).
    pub max_num_seqs: usize,
    /// Most tokens one forward pass computes: decode tokens of running sequences plus prompt chunks. A long
    /// prompt is prefilled over several steps so running streams keep getting tokens.
    pub max_batch_tokens: usize,
    /// Most prompt plus output tokens of one sequence (capped by the model's context length).
    pub max_context_tokens: usize,
    /// Memory for the KV caches of running sequences, MiB; a sequence is admitted only when its prompt plus
    /// `max_tokens` fits.
    pub kv_cache_mb: usize,
    /// Memory for reusable prompt prefixes, MiB; 0 turns prefix reuse off.
    pub prefix_cache_mb: usize,
    /// Shortest prompt prefix worth caching or reusing, tokens.
    pub prefix_min_tokens: usize,
    /// Most requests waiting for a slot; beyond it requests get 429 / RESOURCE_EXHAUSTED at once.
    pub max_waiting: usize,
    /// `max_tokens` of requests that name none.
    pub default_max_tokens: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_num_seqs: 16,
            max_batch_tokens: 256,
            max_context_tokens: 4096,
            kv_cache_mb: 1024,
            prefix_cache_mb: 256,
            prefix_min_tokens: 16,
            max_waiting: 256,
            default_max_tokens: 256,
        }
    }
}
