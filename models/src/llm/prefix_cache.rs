//! Prefix reuse: the KV caches of prompts seen before, kept in a memory-bounded LRU, so a request that
//! starts with a known prefix (a long system prompt, a chain's template) prefills only its new suffix.
//!
//! Entries are whole prompts; a lookup finds the entry sharing the longest prefix with the new prompt and
//! copies that many tokens of its KV. Entries are few (bounded by bytes), so a scan is cheaper than a radix
//! tree would be to maintain. The cache belongs to one model's scheduler thread: no locks.

use crate::error::ModelError;
use crate::llm::step::KvState;

struct Entry<C> {
    tokens: Vec<u32>,
    kv: C,
    bytes: usize,
    last_used: u64,
}

/// Reusable prompt prefixes of one model.
pub struct PrefixCache<C> {
    entries: Vec<Entry<C>>,
    capacity_bytes: usize,
    used_bytes: usize,
    clock: u64,
    /// Shortest prefix worth keeping or reusing.
    min_tokens: usize,
}

/// A reusable prefix: its length in tokens and a private copy of its KV.
pub struct PrefixHit<C> {
    pub tokens: usize,
    pub kv: C,
}

impl<C: KvState> PrefixCache<C> {
    pub fn new(capacity_bytes: usize, min_tokens: usize) -> Self {
        PrefixCache { entries: Vec::new(), capacity_bytes, used_bytes: 0, clock: 0, min_tokens: min_tokens.max(1) }
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// The longest cached prefix of `prompt`, leaving at least one token to prefill (the model must see
    /// one to produce the next token's logits).
    pub fn lookup(&mut self, prompt: &[u32]) -> Result<Option<PrefixHit<C>>, ModelError> {
        let limit = prompt.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
            .map(|e| {
                let common = e.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(limit);
                (common, e)
            })
            .max_by_key(|(common, _)| *common);
        match best {
            Some((common, entry)) if common >= self.min_tokens => {
                self.clock += 1;
                entry.last_used = self.clock;
                Ok(Some(PrefixHit { tokens: common, kv: entry.kv.prefix(common)? }))
            }
            _ => Ok(None),
        }
    }

    /// Keeps the KV of `tokens` (the first `tokens.len()` positions of `kv`). Entries that are prefixes of
    /// it are dropped; least recently used entries are evicted to make room.
    pub fn insert(&mut self, tokens: &[u32], kv: &C) -> Result<(), ModelError> {
        if tokens.len() < self.min_tokens || kv.len() < tokens.len() {
            return Ok(());
        }
        if self.entries.iter().any(|e| e.tokens.starts_with(tokens)) {
            return Ok(()); // already covered
        }
        let kv = kv.prefix(tokens.len())?;
        let bytes = kv.bytes() + tokens.len() * 4;
        if bytes > self.capacity_bytes {
            return Ok(());
        }
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        self.used_bytes = self.entries.iter().map(|e| e.bytes).sum();
        while self.used_bytes + bytes > self.capacity_bytes {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i) else {
                break;
            };
            self.used_bytes -= self.entries.swap_remove(oldest).bytes;
        }
        self.clock += 1;
        self.used_bytes += bytes;
        self.entries.push(Entry { tokens: tokens.to_vec(), kv, bytes, last_used: self.clock });
        Ok(())
    }
}
