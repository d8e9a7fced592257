//! The exact response cache of generation models: the whole request (model, every message with its role, or
//! the raw prompt, every sampling parameter, `max_tokens`, stop strings) → the generated tokens with their
//! text pieces, so a hit replays exactly what the model streamed, as a stream or whole. Only deterministic
//! requests are cached (temperature 0, or a fixed seed): others would return one sample forever.
//!
//! Keying the whole conversation, not its last message, keeps two chats that end with the same question apart.

use std::sync::Arc;
use std::time::Duration;

use ferroserve_models::llm::{SamplingParams, TokenLogprobs};

use super::key::KeyBuilder;
use crate::generation::{FinishReason, GenerationUsage, Prompt};

/// One streamed piece of a cached response.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub id: u32,
    pub text: String,
    pub logprobs: Option<TokenLogprobs>,
}

/// A finished generation, as it was streamed.
#[derive(Debug)]
pub struct CachedResponse {
    pub tokens: Vec<CachedToken>,
    /// Text released at the end (held back as a possible stop string).
    pub tail: String,
    pub finish_reason: FinishReason,
    pub usage: GenerationUsage,
    pub model: Arc<str>,
}

impl CachedResponse {
    pub(crate) fn weight(&self) -> u32 {
        let text: usize =
            self.tokens.iter().map(|t| t.text.len() + 16 + t.logprobs.as_ref().map_or(0, |l| l.top.len() * 8)).sum();
        (text + self.tail.len() + 64).try_into().unwrap_or(u32::MAX)
    }
}

/// What decides a generated answer besides the model's weights: a request as the response caches key it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub prompt: &'a Prompt,
    pub params: &'a SamplingParams,
    pub max_tokens: Option<usize>,
    pub stop: &'a [String],
    pub ignore_eos: bool,
}

pub struct ResponseCache {
    entries: moka::sync::Cache<u128, Arc<CachedResponse>>,
}

impl ResponseCache {
    pub fn new(capacity_bytes: u64, ttl: Duration) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_, v: &Arc<CachedResponse>| v.weight())
            .time_to_live(ttl)
            .support_invalidation_closures()
            .eviction_listener(|_, _, cause| super::count_eviction("response", cause))
            .build();
        ResponseCache { entries }
    }

    /// The key of a request, or `None` when its output is not deterministic (not cacheable).
    pub fn key(model: &str, asked: &Asked) -> Option<u128> {
        if !asked.params.is_deterministic() {
            return None;
        }
        let mut k = KeyBuilder::new("response").text(model);
        match asked.prompt {
            Prompt::Text(t) => k = k.text("text").text(t),
            Prompt::Chat(messages) => {
                k = k.text("chat").number(messages.len() as u64);
                for m in messages {
                    k = k.text(&m.role).text(&m.content);
                }
            }
        }
        Some(parameters(k, asked).finish())
    }

    pub fn get(&self, key: u128) -> Option<Arc<CachedResponse>> {
        self.entries.get(&key)
    }

    pub fn insert(&self, key: u128, value: Arc<CachedResponse>) {
        self.entries.insert(key, value);
    }

    pub fn invalidate_model(&self, model: &str) {
        let model: Arc<str> = model.into();
        if let Err(e) = self.entries.invalidate_entries_if(move |_, v| v.model == model) {
            tracing::warn!(error = %e, "cannot invalidate a model's cached responses");
        }
    }

    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }

    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.weighted_size(), self.entries.entry_count())
    }
}

/// Adds every parameter that changes a generated answer (besides the prompt) to a key.
pub fn parameters(mut k: KeyBuilder, asked: &Asked) -> KeyBuilder {
    let Asked { params, max_tokens, stop, ignore_eos, .. } = *asked;
    let f = |x: f32| u64::from(x.to_bits());
    k = k
        .number(f(params.temperature))
        .number(f(params.top_p))
        .number(params.top_k as u64)
        .number(f(params.min_p))
        .number(f(params.repetition_penalty))
        .number(f(params.frequency_penalty))
        .number(f(params.presence_penalty))
        .number(params.seed.map_or(0, |s| s.wrapping_add(1)))
        .number(params.seed.is_some() as u64)
        .number(params.logprobs.map_or(0, |n| n as u64 + 1))
        .number(max_tokens.map_or(0, |n| n as u64 + 1))
        .number(ignore_eos as u64)
        .number(stop.len() as u64);
    for s in stop {
        k = k.text(s);
    }
    k = k.number(params.logit_bias.len() as u64);
    for &(token, bias) in &params.logit_bias {
        k = k.number(u64::from(token)).number(f(bias));
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_models::llm::ChatMessage;

    fn chat(turns: &[(&str, &str)]) -> Prompt {
        Prompt::Chat(turns.iter().map(|(r, c)| ChatMessage { role: r.to_string(), content: c.to_string() }).collect())
    }

    #[test]
    fn whole_conversations_and_parameters_are_keyed() {
        let greedy = SamplingParams { temperature: 0.0, ..Default::default() };
        fn asked<'a>(
            prompt: &'a Prompt,
            params: &'a SamplingParams,
            max: Option<usize>,
            stop: &'a [String],
        ) -> Asked<'a> {
            Asked { prompt, params, max_tokens: max, stop, ignore_eos: false }
        }
        let key = |p: &Prompt, s: &SamplingParams, max: usize| ResponseCache::key("m", &asked(p, s, Some(max), &[]));
        let a = chat(&[("user", "Tell me about Rust."), ("assistant", "A language."), ("user", "Why?")]);
        let b = chat(&[("user", "Tell me about Go."), ("assistant", "A language."), ("user", "Why?")]);
        assert_ne!(key(&a, &greedy, 16), key(&b, &greedy, 16), "same last message, different conversations");
        assert_eq!(key(&a, &greedy, 16), key(&a, &greedy, 16));
        assert_ne!(key(&a, &greedy, 16), key(&a, &greedy, 17));
        assert_ne!(
            key(&a, &greedy, 16),
            key(
                &chat(&[("system", "Tell me about Rust."), ("assistant", "A language."), ("user", "Why?")]),
                &greedy,
                16
            )
        );
        let seeded = SamplingParams { temperature: 0.7, seed: Some(1), ..Default::default() };
        assert!(key(&a, &seeded, 16).is_some());
        assert_ne!(key(&a, &seeded, 16), key(&a, &SamplingParams { seed: Some(2), ..seeded.clone() }, 16));
        assert!(
            key(&a, &SamplingParams { temperature: 0.7, ..Default::default() }, 16).is_none(),
            "random: not cached"
        );
        let stop = ["x".to_string()];
        assert_ne!(
            ResponseCache::key("m", &asked(&a, &greedy, Some(16), &stop)),
            ResponseCache::key("m", &asked(&a, &greedy, Some(16), &[]))
        );
        assert_ne!(key(&a, &greedy, 16), ResponseCache::key("m:q4", &asked(&a, &greedy, Some(16), &[])));
        let biased = SamplingParams { logit_bias: vec![(3, -100.0)], ..greedy.clone() };
        assert_ne!(key(&a, &greedy, 16), key(&a, &biased, 16), "logit_bias changes the answer");
    }
}
