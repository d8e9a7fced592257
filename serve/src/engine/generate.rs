//! Generation requests: validation, prompt building (chat template or raw text), tokenization, limits
//! against the context length, the response caches (exact, then semantic), and submission to the model's
//! scheduler.

use std::time::{Duration, Instant};

use std::sync::Arc;

use ferroserve_models::llm::{ChatMessage, LanguageInfo, SamplingParams};
use tokio::sync::mpsc;

use super::{EmbedRequest, Engine, EngineError, ServedModel};
use crate::cache::codec;
use crate::cache::key::KeyBuilder;
use crate::cache::response::parameters;
use crate::cache::semantic::{SemanticCache, SemanticKey};
use crate::cache::shared::{Kind, SharedCache};
use crate::cache::{CacheMode, CachedResponse, CachedToken, ResponseCache};
use crate::generation::{GenerationEvent, GenerationJob, GenerationUsage, Generator};

/// Most stop strings per request (OpenAI allows 4).
const MAX_STOP_STRINGS: usize = 16;
/// Longest wait for the embedding of a conversation (semantic cache); past it the request goes on without.
const SEMANTIC_EMBED_TIMEOUT: Duration = Duration::from_secs(2);

/// The text to continue.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Raw text, continued as is (`/v1/completions`). Control tokens written in it are parsed.
    Text(String),
    /// A conversation, rendered with the model's chat template (`/v1/chat/completions`).
    Chat(Vec<ChatMessage>),
}

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
    /// Give up if no slot frees up within this long.
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

/// A validated request, ready for the scheduler.
struct Prepared<'a> {
    generator: &'a Generator,
    job: GenerationJob,
}

impl Engine {
    /// Validates and queues `req`; tokens arrive on the returned stream. A deterministic request may be
    /// answered from the exact response cache (before anything else), or from the model's semantic cache.
    pub async fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, EngineError> {
        let model = self.ready_model(&req.model)?;
        let response_cache = self.response_cache.as_ref().filter(|_| req.cache != CacheMode::Skip);
        let key = response_cache.and_then(|_| {
            ResponseCache::key(&model.name, &req.prompt, &req.params, req.max_tokens, &req.stop, req.ignore_eos)
        });
        if let (Some(cache), Some(key), true) = (response_cache, key, req.cache.reads())
            && let Some(hit) = match cache.get(key) {
                Some(hit) => Some(hit),
                None => self.shared_response(cache, &model.name, key).await,
            }
        {
            let generator = model.generator()?;
            count("ferroserve_cache_hits_total", "response", &model.name);
            let prompt_tokens = hit.usage.prompt_tokens;
            return Ok(replay(&model.name, generator.info.clone(), &hit, prompt_tokens, "HIT"));
        }
        if response_cache.is_some() && key.is_some() {
            count("ferroserve_cache_misses_total", "response", &model.name);
        }
        let result = self.generate_uncached(&model, &req, response_cache.zip(key)).await;
        if let Err(e) = &result {
            metrics::counter!("ferroserve_model_requests_total", "model" => model.name.clone(), "outcome" => e.kind())
                .increment(1);
        }
        result
    }

    /// An exact response from the shared cache (Redis), put into the local cache too.
    async fn shared_response(&self, cache: &ResponseCache, model: &str, key: u128) -> Option<Arc<CachedResponse>> {
        let shared = self.shared.as_ref()?;
        let keys = [shared.cache.key(Kind::Response, model, key)];
        let found = shared.cache.get_many(Kind::Response, model, &keys).await.pop().flatten()?;
        let hit = Arc::new(codec::decode_response(&found, model.into())?);
        cache.insert(key, hit.clone());
        Some(hit)
    }

    async fn generate_uncached(
        &self,
        model: &ServedModel,
        req: &GenerateRequest,
        exact: Option<(&Arc<ResponseCache>, u128)>,
    ) -> Result<GenerationStream, EngineError> {
        let Prepared { generator, job } = prepare(model, req)?;
        let prompt_tokens = job.prompt.len();
        let semantic = match self.semantic_caches.get(&model.name) {
            Some(cache) if req.cache != CacheMode::Skip && req.params.is_deterministic() => {
                self.semantic_key(model, req).await.map(|key| (cache.clone(), key))
            }
            _ => None,
        };
        if let (Some((cache, key)), true) = (&semantic, req.cache.reads()) {
            if let Some(hit) = cache.get(key) {
                count("ferroserve_cache_hits_total", "semantic", &model.name);
                let mut stream = replay(&model.name, generator.info.clone(), &hit.response, prompt_tokens, "SEMANTIC");
                stream.similarity = Some(hit.similarity);
                return Ok(stream);
            }
            count("ferroserve_cache_misses_total", "semantic", &model.name);
        }
        if req.cache == CacheMode::Only {
            return Err(EngineError::CacheMiss);
        }
        let mut events = generator.submit(job)?;
        if req.cache.writes() && (exact.is_some() || semantic.is_some()) {
            let shared =
                self.shared.as_ref().zip(exact).map(|(s, (_, key))| {
                    (s.cache.clone(), s.cache.key(Kind::Response, &model.name, key), s.response_ttl)
                });
            let sink = Recorder {
                exact: exact.map(|(c, k)| (c.clone(), k)),
                shared,
                semantic,
                model: model.name.as_str().into(),
            };
            events = sink.record(events);
        }
        Ok(GenerationStream {
            model: model.name.clone(),
            info: generator.info.clone(),
            prompt_tokens,
            events,
            cache: "MISS",
            similarity: None,
        })
    }

    /// Embeds the request's conversation for the semantic cache; `None` (and a logged, counted reason) when
    /// that cannot be done now: the text is longer than the embedding model takes, or it is busy. The
    /// request is then served without the semantic cache rather than failed.
    async fn semantic_key(&self, model: &ServedModel, req: &GenerateRequest) -> Option<SemanticKey> {
        let embedder = &model.config.semantic_cache.as_ref()?.embedding_model;
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
        let group = parameters(shape, &req.params, req.max_tokens, &req.stop, req.ignore_eos).finish();
        let inputs = std::iter::once(context).chain(last).collect();
        let embed = EmbedRequest {
            model: embedder.clone(),
            inputs,
            normalize: Some(true),
            truncate: false,
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

fn count(metric: &'static str, cache: &'static str, model: &str) {
    metrics::counter!(metric, "cache" => cache, "model" => model.to_string()).increment(1);
}

/// Validation, prompt rendering and tokenization: everything before the scheduler.
fn prepare<'a>(model: &'a ServedModel, req: &GenerateRequest) -> Result<Prepared<'a>, EngineError> {
    let generator = model.generator()?;
    req.params.validate().map_err(EngineError::InvalidInput)?;
    validate_stop(&req.stop)?;
    let info = &generator.info;
    let text = match &req.prompt {
        Prompt::Text(t) if t.is_empty() => return Err(invalid("prompt is empty")),
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(messages) => {
            validate_messages(messages)?;
            let template = info
                .template
                .as_ref()
                .ok_or_else(|| invalid(&format!("model {:?} has no chat template; use /v1/completions", model.name)))?;
            template.render(messages, true).map_err(|e| invalid(&format!("chat template: {e}")))?
        }
    };
    let prompt = info.tokenizer.encode(&text, true).map_err(|e| EngineError::Internal(e.to_string()))?;
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
    let batching = &model.config.batching;
    let priority = req.priority.unwrap_or(batching.default_priority);
    if priority >= batching.priority_levels {
        return Err(invalid(&format!(
            "priority must be between 0 and {}, got {priority}",
            batching.priority_levels - 1
        )));
    }
    let job = GenerationJob {
        prompt,
        params: req.params.clone(),
        max_tokens,
        stop: req.stop.clone(),
        ignore_eos: req.ignore_eos,
        priority,
        deadline: req.timeout.map(|t| Instant::now() + t),
    };
    Ok(Prepared { generator, job })
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

/// Where a finished generation is kept.
struct Recorder {
    exact: Option<(Arc<ResponseCache>, u128)>,
    /// The shared cache, the entry's key there and its TTL.
    shared: Option<(Arc<SharedCache>, String, Duration)>,
    semantic: Option<(Arc<SemanticCache>, SemanticKey)>,
    model: Arc<str>,
}

impl Recorder {
    /// Passes `inner`'s events on, keeping a copy; a finished generation goes into the caches. When the
    /// client goes away, `inner` is dropped at once, which stops the generation.
    fn record(self, mut inner: mpsc::UnboundedReceiver<GenerationEvent>) -> mpsc::UnboundedReceiver<GenerationEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut tokens = Vec::new();
            let mut sink = Some(self);
            loop {
                let event = tokio::select! {
                    _ = tx.closed() => return,
                    event = inner.recv() => match event {
                        Some(e) => e,
                        None => return,
                    },
                };
                match &event {
                    GenerationEvent::Token { id, text, logprobs } => {
                        tokens.push(CachedToken { id: *id, text: text.clone(), logprobs: logprobs.clone() })
                    }
                    GenerationEvent::Done { finish_reason, text, usage } => {
                        if let Some(sink) = sink.take() {
                            let value = Arc::new(CachedResponse {
                                tokens: std::mem::take(&mut tokens),
                                tail: text.clone(),
                                finish_reason: *finish_reason,
                                usage: *usage,
                                model: sink.model.clone(),
                            });
                            if let Some((cache, key)) = sink.exact {
                                cache.insert(key, value.clone());
                            }
                            if let Some((shared, key, ttl)) = sink.shared {
                                shared.put_many(
                                    Kind::Response,
                                    &sink.model,
                                    vec![(key, codec::encode_response(&value))],
                                    ttl,
                                );
                            }
                            if let Some((cache, key)) = sink.semantic {
                                cache.insert(key, value);
                            }
                        }
                    }
                    GenerationEvent::Failed(_) => {}
                }
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        rx
    }
}
