//! Generation requests: validation, prompt building (chat template or raw text), tokenization, limits
//! against the context length, and submission to the model's scheduler.

use std::time::{Duration, Instant};

use std::sync::Arc;

use ferroserve_models::llm::{ChatMessage, LanguageInfo, SamplingParams};
use tokio::sync::mpsc;

use super::{Engine, EngineError};
use crate::generation::{GenerationEvent, GenerationJob};

/// Most stop strings per request (OpenAI allows 4).
const MAX_STOP_STRINGS: usize = 16;

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
}

/// An accepted request: its events and what is known before the first token.
pub struct GenerationStream {
    pub model: String,
    /// The model's tokenizer and limits (to render tokens for logprobs).
    pub info: Arc<LanguageInfo>,
    pub prompt_tokens: usize,
    pub events: mpsc::UnboundedReceiver<GenerationEvent>,
}

impl Engine {
    /// Validates and queues `req`; tokens arrive on the returned stream.
    pub async fn generate(&self, req: GenerateRequest) -> Result<GenerationStream, EngineError> {
        let model = self.ready_model(&req.model)?;
        let result = (|| {
            let generator = model.generator()?;
            req.params.validate().map_err(EngineError::InvalidInput)?;
            validate_stop(&req.stop)?;
            let info = &generator.info;
            let text = match &req.prompt {
                Prompt::Text(t) if t.is_empty() => return Err(invalid("prompt is empty")),
                Prompt::Text(t) => t.clone(),
                Prompt::Chat(messages) => {
                    validate_messages(messages)?;
                    let template = info.template.as_ref().ok_or_else(|| {
                        invalid(&format!("model {:?} has no chat template; use /v1/completions", model.name))
                    })?;
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
            let prompt_tokens = prompt.len();
            let job = GenerationJob {
                prompt,
                params: req.params.clone(),
                max_tokens,
                stop: req.stop.clone(),
                ignore_eos: req.ignore_eos,
                priority,
                deadline: req.timeout.map(|t| Instant::now() + t),
            };
            let events = generator.submit(job)?;
            Ok(GenerationStream { model: model.name.clone(), info: info.clone(), prompt_tokens, events })
        })();
        if let Err(e) = &result {
            metrics::counter!("ferroserve_model_requests_total", "model" => model.name.clone(), "outcome" => e.kind())
                .increment(1);
        }
        result
    }
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
