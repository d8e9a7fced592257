//! Generation requests: validation, prompt building (chat template or raw text), tokenization and limits
//! against the context length — all before any cache is asked —, then the response caches (exact, then
//! semantic), and submission to the model's scheduler.

use std::sync::Arc;
use std::time::Duration;

use ferroserve_models::llm::{ChatMessage, LanguageInfo, SamplingParams};
use tokio::sync::mpsc;

use super::{EmbedRequest, Engine, EngineError, ServedModel, Truncate};
use crate::cache::key::KeyBuilder;
use crate::cache::response::parameters;
use crate::cache::{Asked, CacheMode, CachedResponse, SemanticKey, count};
use crate::generation::{GenerationEvent, GenerationJob, GenerationUsage, Generator, Prompt};

/// Most stop strings per request (OpenAI allows 4).
const MAX_STOP_STRINGS: usize = 16;
/// Longest wait for the embedding of a conversation (semantic cache); past it the request goes on without.
const SEMANTIC_EMBED_TIMEOUT: Duration = Duration::from_secs(2);

/// One generation call, as every transport describes it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: Prompt,
    pub params: SamplingParams,
    /// `None`: the model's `default_max_tokens`, capped by the room left in the context.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// Generate exactly `max_tokens` (end-of-generation tokens do not stop it); for benchmarks.
    pub ignore_eos: bool,
    pub priority: Option<u8>,
    /// Give up if no slot frees up within this long; `None`: the model's `batching.default_timeout_ms`.
    pub timeout: Option<Duration>,
    /// How this request uses the response cache (deterministic requests only).
    pub cache: CacheMode,
}

/// An accepted request: its events and what is known before the first token.
pub struct GenerationStream {
    pub model: String,
    /// The model's tokenizer and limits (to render tokens for logprobs).
    pub info: Arc<LanguageInfo>,
    pub prompt_tokens: usize,
    pub events: mpsc::UnboundedReceiver<GenerationEvent>,
    /// `HIT` (replayed from the exact response cache), `SEMANTIC` (a similar conversation's answer) or `MISS`.
    pub cache: &'static str,
    /// Cosine similarity of a `SEMANTIC` hit.
    pub similarity: Option<f32>,
}

impl GenerateRequest {
    /// What decides the answer, as the response caches key it.
    fn asked(&self) -> Asked<'_> {
        Asked {
            prompt: &self.prompt,
            params: &self.params,
            max_tokens: self.max_tokens,
            stop: &self.stop,
            ignore_eos: self.ignore_eos,
        }
    }
}

/// A whole generation: its text, how it finished and its token counts.
pub struct Collected {
    pub text: String,
    pub finish_reason: crate::generation::FinishReason,
    pub usage: crate::generation::GenerationUsage,
}

impl GenerationStream {
    /// Reads the events to the end. `on_piece` sees each non-empty piece of text as it comes; an error from
    /// it stops reading (dropping the events stops the generation).
    pub async fn collect(
        mut self,
        mut on_piece: impl FnMut(&str) -> Result<(), EngineError>,
    ) -> Result<Collected, EngineError> {
        let mut text = String::new();
        while let Some(event) = self.events.recv().await {
            let (piece, done) = match event {
                GenerationEvent::Token { text, .. } => (text, None),
                GenerationEvent::Done { finish_reason, text, usage } => (text, Some((finish_reason, usage))),
                GenerationEvent::Failed(e) => return Err(e.into()),
            };
            if !piece.is_empty() {
                on_piece(&piece)?;
                text.push_str(&piece);
            }
            if let Some((finish_reason, usage)) = done {
                return Ok(Collected { text, finish_reason, usage });
            }
        }
        Err(EngineError::Internal("the generation ended without an answer".into()))
    }

    /// How the request was served, for headers and metadata.
    pub fn meta(&self) -> super::ResponseMeta {
        super::ResponseMeta {
            model: self.model.clone(),
            cache: self.cache,
            similarity: self.similarity,
            ..Default::default()
        }
    }
}

impl Engine {
    /// Validates `req` completely, then answers it from the exact response cache, from the model's
    /// semantic cache, or by queueing it; tokens arrive on the returned stream.
    pub async fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, EngineError> {
        let model = self.ready_model(&req.model)?;
        let result = self.generate_with(&model, &req).await;
        model.record_outcome(&result);
        result
    }

    async fn generate_with(&self, model: &ServedModel, req: &GenerateRequest) -> Result<GenerationStream, EngineError> {
        let generator = model.generator()?;
        let job = prepare(model, generator, req)?;
        let prompt_tokens = job.prompt.len();
        let info = generator.info.clone();
        let key = self.caches.response_key(req.cache, &model.name, &req.asked());
        if let (Some(key), true) = (key, req.cache.reads())
            && let Some(hit) = self.caches.response(&model.name, key).await
        {
            return Ok(replay(&model.name, info, &hit, prompt_tokens, "HIT"));
        }
        let semantic = match self.caches.semantic(&model.name) {
            Some(cache) if req.cache != CacheMode::Skip && req.params.is_deterministic() => {
                self.semantic_key(model, req).await.map(|key| (cache.clone(), key))
            }
            _ => None,
        };
        if let (Some((cache, key)), true) = (&semantic, req.cache.reads()) {
            if let Some(hit) = cache.get(key) {
                count("ferroserve_cache_hits_total", "semantic", &model.name, 1);
                let mut stream = replay(&model.name, info, &hit.response, prompt_tokens, "SEMANTIC");
                stream.similarity = Some(hit.similarity);
                return Ok(stream);
            }
            count("ferroserve_cache_misses_total", "semantic", &model.name, 1);
        }
        if req.cache == CacheMode::Only {
            return Err(EngineError::CacheMiss);
        }
        let mut events = generator.submit(job)?;
        if req.cache.writes()
            && let Some(recorder) = self.caches.recorder(&model.name, key, semantic)
        {
            events = recorder.record(events);
        }
        Ok(GenerationStream { model: model.name.clone(), info, prompt_tokens, events, cache: "MISS", similarity: None })
    }

    /// Embeds the request's conversation for the semantic cache; `None` (and a logged, counted reason) when
    /// that cannot be done now: the text is longer than the embedding model takes, or it is busy. The
    /// request is then served without the semantic cache rather than failed.
    async fn semantic_key(&self, model: &ServedModel, req: &GenerateRequest) -> Option<SemanticKey> {
        let embedder = &model.entry.semantic_cache.as_ref()?.embedding_model;
        let (context, last, shape) = match &req.prompt {
            Prompt::Text(t) => (t.clone(), None, KeyBuilder::new("semantic").text(&model.name).text("text")),
            Prompt::Chat(messages) => {
                let mut shape = KeyBuilder::new("semantic").text(&model.name).text("chat");
                let mut context = String::new();
                for m in messages {
                    shape = shape.text(&m.role);
                    context.push_str(&format!("{}: {}\n", m.role, m.content));
                }
                (context, messages.last().map(|m| m.content.clone()), shape)
            }
        };
        let group = parameters(shape, &req.asked()).finish();
        let inputs = std::iter::once(context).chain(last).collect();
        let embed = EmbedRequest {
            model: embedder.clone(),
            inputs,
            normalize: Some(true),
            truncate: Truncate::Refuse,
            dimensions: None,
            priority: None,
            timeout: Some(SEMANTIC_EMBED_TIMEOUT),
            cache: CacheMode::Default,
        };
        match self.embed(embed).await {
            Ok(out) => {
                let mut vectors = out.vectors.into_iter();
                let context = vectors.next()?;
                let last = vectors.next().unwrap_or_else(|| context.clone());
                Some(SemanticKey { group, context, last })
            }
            Err(e) => {
                tracing::debug!(model = %model.name, error = %e, "semantic cache not used for this request");
                metrics::counter!("ferroserve_cache_errors_total", "cache" => "semantic", "model" => model.name.clone(), "reason" => e.kind())
                    .increment(1);
                None
            }
        }
    }
}

/// Validation, prompt rendering and tokenization: everything before the caches and the scheduler.
fn prepare(model: &ServedModel, generator: &Generator, req: &GenerateRequest) -> Result<GenerationJob, EngineError> {
    let info = &generator.info;
    req.params.validate(info.tokenizer.vocab_size()).map_err(EngineError::InvalidInput)?;
    validate_stop(&req.stop)?;
    let (priority, deadline) = model.schedule(req.priority, req.timeout)?;
    let prompt = match &req.prompt {
        Prompt::Text(t) if t.is_empty() => return Err(invalid("prompt is empty")),
        Prompt::Text(t) => info.tokenizer.encode(t, true).map_err(|e| EngineError::Internal(e.to_string()))?,
        Prompt::Chat(messages) => {
            validate_messages(messages)?;
            let no_template = || invalid(&format!("model {:?} has no chat template; use /v1/completions", model.name));
            info.chat_prompt(messages).ok_or_else(no_template)?.map_err(|e| match e {
                ferroserve_models::llm::ChatPromptError::Template(reason) => {
                    invalid(&format!("chat template: {reason}"))
                }
                other => EngineError::Internal(other.to_string()),
            })?
        }
    };
    let context = info.context_length;
    if prompt.len() >= context {
        return Err(invalid(&format!(
            "the prompt has {} tokens; model {:?} takes at most {context} tokens of prompt and output",
            prompt.len(),
            model.name
        )));
    }
    let room = context - prompt.len();
    let max_tokens = match req.max_tokens {
        Some(0) => return Err(invalid("max_tokens must be at least 1")),
        Some(n) if n > room => {
            return Err(invalid(&format!(
                "max_tokens ({n}) plus the prompt ({} tokens) exceeds model {:?}'s context of {context} \
                 tokens; lower max_tokens to at most {room}",
                prompt.len(),
                model.name
            )));
        }
        Some(n) => n,
        None => generator.config.default_max_tokens.min(room),
    };
    Ok(GenerationJob {
        prompt,
        params: req.params.clone(),
        max_tokens,
        stop: req.stop.clone(),
        ignore_eos: req.ignore_eos,
        priority,
        deadline,
    })
}

fn invalid(message: &str) -> EngineError {
    EngineError::InvalidInput(message.to_string())
}

fn validate_messages(messages: &[ChatMessage]) -> Result<(), EngineError> {
    if messages.is_empty() {
        return Err(invalid("messages is empty: send at least one message"));
    }
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(invalid(&format!(
                "messages[{i}].role {:?} is not supported; use \"system\", \"user\" or \"assistant\"",
                m.role
            )));
        }
    }
    Ok(())
}

fn validate_stop(stop: &[String]) -> Result<(), EngineError> {
    if stop.len() > MAX_STOP_STRINGS {
        return Err(invalid(&format!("at most {MAX_STOP_STRINGS} stop strings, got {}", stop.len())));
    }
    if stop.iter().any(String::is_empty) {
        return Err(invalid("stop strings must not be empty"));
    }
    Ok(())
}

/// A stream that replays a cached response; all `prompt_tokens` of the request count as cached.
fn replay(
    model: &str,
    info: Arc<LanguageInfo>,
    hit: &CachedResponse,
    prompt_tokens: usize,
    cache: &'static str,
) -> GenerationStream {
    let (tx, events) = mpsc::unbounded_channel();
    for t in &hit.tokens {
        let _ = tx.send(GenerationEvent::Token { id: t.id, text: t.text.clone(), logprobs: t.logprobs.clone() });
    }
    let usage = GenerationUsage { prompt_tokens, cached_tokens: prompt_tokens, ..hit.usage };
    let _ = tx.send(GenerationEvent::Done { finish_reason: hit.finish_reason, text: hit.tail.clone(), usage });
    GenerationStream { model: model.to_string(), info, prompt_tokens, events, cache, similarity: None }
}
