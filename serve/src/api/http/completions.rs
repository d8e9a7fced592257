//! OpenAI text generation: `POST /v1/chat/completions` and `POST /v1/completions`, whole or streamed as
//! server-sent events (chunks, then `data: [DONE]`). A client that disconnects drops the stream, which
//! stops its generation and frees its slot.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferroserve_models::llm::{ChatMessage, GgufTokenizer, SamplingParams, TokenLogprobs};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::error::{ApiError, OpenAiError};
use super::extract::{JsonBody, MetaHeaders};
use super::scheduling::{Scheduling, SchedulingHeaders, route_key};
use super::schemas::{
    CacheModeSchema, ChatCompletion, LogitBias, MessageContent, OpenAiErrorBody, Role, SseEvent, StopStrings,
    TextCompletion,
};
use super::{AppState, labeled};
use crate::api::auth::Principal;
use crate::cache::CacheMode;
use crate::engine::{EngineError, GenerateRequest, GenerationStream};
use crate::generation::{GenerationEvent, GenerationUsage, Prompt};

/// Sampling and control fields shared by both endpoints. Unknown fields are ignored, as OpenAI's
/// clients send fields this server has no use for (`user`, `metadata`, ...).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CommonParams {
    #[schema(minimum = 1)]
    max_tokens: Option<usize>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    temperature: Option<f32>,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    top_p: Option<f32>,
    /// Extension (vLLM): 0 or -1 is off.
    #[schema(minimum = -1)]
    top_k: Option<i64>,
    /// Extension (vLLM).
    #[schema(minimum = 0.0, maximum = 1.0)]
    min_p: Option<f32>,
    /// Extension (vLLM, llama.cpp).
    #[schema(exclusive_minimum = 0.0, maximum = 10.0)]
    repetition_penalty: Option<f32>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    frequency_penalty: Option<f32>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    presence_penalty: Option<f32>,
    seed: Option<i64>,
    /// A stop string or a list of them.
    #[schema(value_type = Option<StopStrings>)]
    stop: Option<Value>,
    /// Extension (vLLM): generate exactly `max_tokens`, past end-of-generation tokens (for benchmarks).
    #[serde(default)]
    ignore_eos: bool,
    /// Only 1.
    #[schema(minimum = 1, maximum = 1)]
    n: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    /// ferroserve extension: 0 is admitted first (also header `x-ferroserve-priority`).
    priority: Option<u8>,
    /// ferroserve extension: give up if no slot frees within this many ms (also `x-ferroserve-timeout-ms`).
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
    /// ferroserve extension: default | skip | refresh | only (also header `x-ferroserve-cache`).
    #[schema(value_type = Option<CacheModeSchema>)]
    cache: Option<CacheMode>,
    /// Token id (as a string, OpenAI's form) → bias from -100 (ban) to 100 (force).
    #[schema(value_type = Option<HashMap<String, LogitBias>>)]
    logit_bias: Option<HashMap<String, f32>>,
    /// Not supported: refused with a 400 rather than ignored (see [`CommonParams::refuse_unsupported`]);
    /// left out of the OpenAPI document, which lists what the server does.
    #[schema(ignore)]
    response_format: Option<Value>,
    #[schema(ignore)]
    tools: Option<Value>,
    #[schema(ignore)]
    tool_choice: Option<Value>,
    #[schema(ignore)]
    functions: Option<Value>,
    #[schema(ignore)]
    function_call: Option<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// OpenAI's chat completion request, with vLLM's sampling extensions and ferroserve's scheduling fields.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}))]
pub struct ChatCompletionRequest {
    model: String,
    #[schema(min_items = 1)]
    messages: Vec<MessageIn>,
    #[schema(minimum = 1)]
    max_completion_tokens: Option<usize>,
    logprobs: Option<bool>,
    /// Needs `logprobs: true`.
    #[schema(maximum = 20)]
    top_logprobs: Option<usize>,
    #[serde(flatten)]
    common: CommonParams,
}

#[derive(Debug, Deserialize, ToSchema)]
struct MessageIn {
    #[schema(value_type = Role)]
    role: String,
    #[serde(default)]
    #[schema(value_type = MessageContent)]
    content: Value,
}

/// OpenAI's (legacy) text completion request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "SmolLM2-135M-Instruct", "prompt": "The capital of France is", "max_tokens": 8}))]
pub struct CompletionRequest {
    model: String,
    #[schema(value_type = String)]
    prompt: Value,
    /// Number of alternatives per token (0..=5 in OpenAI's API).
    #[schema(maximum = 20)]
    logprobs: Option<usize>,
    /// Not supported (refused); left out of the document.
    #[serde(default)]
    #[schema(ignore)]
    echo: bool,
    #[schema(ignore)]
    suffix: Option<String>,
    /// Only 1.
    #[schema(minimum = 1, maximum = 1)]
    best_of: Option<u32>,
    #[serde(flatten)]
    common: CommonParams,
}

fn invalid(message: impl Into<String>) -> OpenAiError {
    OpenAiError(ApiError::from(EngineError::InvalidInput(message.into())))
}

/// A message's text: a string, or an array of `{"type": "text", "text": ...}` parts.
fn message_text(i: usize, content: Value) -> Result<String, OpenAiError> {
    match content {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => parts
            .into_iter()
            .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                (Some("text"), Some(t)) => Ok(t.to_string()),
                _ => Err(invalid(format!("messages[{i}].content: only text parts are supported"))),
            })
            .collect(),
        _ => Err(invalid(format!("messages[{i}].content must be a string or an array of text parts"))),
    }
}

fn stop_strings(stop: Option<Value>) -> Result<Vec<String>, OpenAiError> {
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(invalid("stop must be a string or an array of strings")),
            })
            .collect(),
        Some(_) => Err(invalid("stop must be a string or an array of strings")),
    }
}

impl CommonParams {
    /// Fields this server does not implement get a 400 that says so: a client that relies on them must
    /// not get an answer that silently ignores them.
    fn refuse_unsupported(&self) -> Result<(), OpenAiError> {
        match self.response_format.as_ref().map(|f| f.get("type").and_then(Value::as_str)) {
            None | Some(Some("text")) => {}
            Some(kind) => {
                return Err(invalid(format!(
                    "response_format {} is not supported (only \"text\"): this server does not constrain output \
                     to JSON",
                    kind.unwrap_or("(without a type)")
                )));
            }
        }
        let tools = [
            ("tools", &self.tools),
            ("tool_choice", &self.tool_choice),
            ("functions", &self.functions),
            ("function_call", &self.function_call),
        ];
        match tools.iter().find(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null())) {
            Some((name, _)) => Err(invalid(format!("{name} is not supported: this server does not call tools"))),
            None => Ok(()),
        }
    }

    fn logit_bias(&self) -> Result<Vec<(u32, f32)>, OpenAiError> {
        let Some(bias) = &self.logit_bias else { return Ok(Vec::new()) };
        let mut out: Vec<(u32, f32)> = bias
            .iter()
            .map(|(token, &b)| match token.trim().parse::<u32>() {
                Ok(id) => Ok((id, b)),
                Err(_) => Err(invalid(format!("logit_bias: {token:?} is not a token id"))),
            })
            .collect::<Result<_, _>>()?;
        out.sort_unstable_by_key(|(id, _)| *id);
        Ok(out)
    }

    fn sampling(&self, logprobs: Option<usize>) -> Result<SamplingParams, OpenAiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid("only n = 1 is supported"));
        }
        self.refuse_unsupported()?;
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => k as usize,
            Some(k) => return Err(invalid(format!("top_k must be positive (or -1 / 0 for off), got {k}"))),
        };
        let defaults = SamplingParams::default();
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k,
            min_p: self.min_p.unwrap_or(defaults.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(defaults.repetition_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
            seed: self.seed.map(|s| s as u64),
            logprobs,
            logit_bias: self.logit_bias()?,
        })
    }

    fn request(
        &self,
        model: String,
        prompt: Prompt,
        max_tokens: Option<usize>,
        logprobs: Option<usize>,
        headers: &HeaderMap,
    ) -> Result<GenerateRequest, OpenAiError> {
        let scheduling = Scheduling::from_request(headers, self.priority, self.timeout_ms, self.cache)?;
        Ok(GenerateRequest {
            model,
            prompt,
            params: self.sampling(logprobs)?,
            max_tokens: max_tokens.or(self.max_tokens),
            stop: stop_strings(self.stop.clone())?,
            ignore_eos: self.ignore_eos,
            priority: scheduling.priority,
            timeout: scheduling.timeout,
            cache: scheduling.cache,
        })
    }
}

/// Which endpoint a response is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// A chat completion (OpenAI): the whole answer, or `text/event-stream` chunks with `stream: true`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "OpenAI", request_body = ChatCompletionRequest,
    params(SchedulingHeaders),
    responses((status = 200, description = "The answer, or its chunks as server-sent events",
               content((ChatCompletion = "application/json"), (SseEvent = "text/event-stream")),
               headers(("x-cache" = String, description = "HIT, SEMANTIC or MISS"))),
              (status = "4XX", description = "What is wrong with the request", body = OpenAiErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = OpenAiErrorBody)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    JsonBody(req, _): JsonBody<ChatCompletionRequest, OpenAiError>,
) -> Response {
    let model = req.model.clone();
    let key = route_key(&headers, principal.as_deref());
    let result = async {
        let messages = req
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let role = if m.role == "developer" { "system".to_string() } else { m.role };
                Ok(ChatMessage { role, content: message_text(i, m.content)? })
            })
            .collect::<Result<Vec<_>, OpenAiError>>()?;
        let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
            (true, n) => Some(n.unwrap_or(0)),
            (false, Some(_)) => return Err(invalid("top_logprobs needs logprobs: true")),
            (false, None) => None,
        };
        let request =
            req.common.request(req.model, Prompt::Chat(messages), req.max_completion_tokens, logprobs, &headers)?;
        respond(&state, request, Kind::Chat, &req.common, key.as_deref()).await
    }
    .await;
    labeled(&state.engine, &model, result)
}

/// A text completion (OpenAI): the whole answer, or `text/event-stream` chunks with `stream: true`.
#[utoipa::path(post, path = "/v1/completions", tag = "OpenAI", request_body = CompletionRequest,
    params(SchedulingHeaders),
    responses((status = 200, description = "The answer, or its chunks as server-sent events",
               content((TextCompletion = "application/json"), (SseEvent = "text/event-stream")),
               headers(("x-cache" = String, description = "HIT, SEMANTIC or MISS"))),
              (status = "4XX", description = "What is wrong with the request", body = OpenAiErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = OpenAiErrorBody)))]
pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    JsonBody(req, _): JsonBody<CompletionRequest, OpenAiError>,
) -> Response {
    let model = req.model.clone();
    let key = route_key(&headers, principal.as_deref());
    let result = async {
        if req.echo {
            return Err(invalid("echo is not supported"));
        }
        if req.suffix.is_some() {
            return Err(invalid("suffix is not supported"));
        }
        if req.best_of.is_some_and(|b| b != 1) {
            return Err(invalid("only best_of = 1 is supported"));
        }
        let prompt = match req.prompt {
            Value::String(s) => s,
            Value::Array(items) if items.len() == 1 && items[0].is_string() => {
                items[0].as_str().unwrap_or_default().to_string()
            }
            Value::Array(_) => return Err(invalid("prompt: send one string (batches of prompts are not supported)")),
            _ => return Err(invalid("prompt must be a string")),
        };
        let request = req.common.request(req.model, Prompt::Text(prompt), None, req.logprobs, &headers)?;
        respond(&state, request, Kind::Completion, &req.common, key.as_deref()).await
    }
    .await;
    labeled(&state.engine, &model, result)
}

async fn respond(
    state: &AppState,
    request: GenerateRequest,
    kind: Kind,
    common: &CommonParams,
    route_key: Option<&str>,
) -> Result<Response, OpenAiError> {
    let generation = state.engine.generate_routed(request, route_key).await?;
    let shape = Shape {
        kind,
        id: format!("{}-{}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, request_id()),
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        model: generation.model.clone(),
    };
    let cache = MetaHeaders(generation.meta());
    if common.stream {
        let include_usage = common.stream_options.as_ref().is_some_and(|o| o.include_usage);
        return Ok((cache, Sse::new(sse_events(shape, generation, include_usage))).into_response());
    }
    let whole = collect(generation).await?;
    Ok((cache, Json(shape.whole(whole))).into_response())
}

/// A short unique id for response objects.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{nanos:08x}{n:x}")
}

/// A generated token's log-probability and the most likely alternatives, as text.
struct TokenInfo {
    token: String,
    logprob: f32,
    top: Vec<(String, f32)>,
}

fn resolve(tokenizer: &GgufTokenizer, id: u32, lp: TokenLogprobs) -> TokenInfo {
    let text = |id: u32| tokenizer.decode(&[id]).unwrap_or_default();
    TokenInfo { token: text(id), logprob: lp.logprob, top: lp.top.into_iter().map(|(id, l)| (text(id), l)).collect() }
}

/// A whole generation, gathered from its events.
struct Whole {
    text: String,
    logprobs: Vec<TokenInfo>,
    finish_reason: &'static str,
    usage: GenerationUsage,
}

async fn collect(mut generation: GenerationStream) -> Result<Whole, OpenAiError> {
    let mut whole =
        Whole { text: String::new(), logprobs: Vec::new(), finish_reason: "stop", usage: Default::default() };
    while let Some(event) = generation.events.recv().await {
        match event {
            GenerationEvent::Token { id, text, logprobs } => {
                whole.text.push_str(&text);
                if let Some(lp) = logprobs {
                    whole.logprobs.push(resolve(&generation.info.tokenizer, id, lp));
                }
            }
            GenerationEvent::Done { finish_reason, text, usage } => {
                whole.text.push_str(&text);
                whole.finish_reason = finish_reason.as_str();
                whole.usage = usage;
                return Ok(whole);
            }
            GenerationEvent::Failed(e) => return Err(EngineError::from(e).into()),
        }
    }
    Err(EngineError::Internal("generation ended without a result".into()).into())
}

/// What every response object of one request shares.
#[derive(Clone)]
struct Shape {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

fn usage_json(u: &GenerationUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

fn chat_logprobs(items: &[TokenInfo]) -> Value {
    let entry = |token: &str, logprob: f32| json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()});
    let content: Vec<Value> = items
        .iter()
        .map(|t| {
            let mut e = entry(&t.token, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|(token, l)| entry(token, *l)).collect();
            e
        })
        .collect();
    json!({"content": content})
}

fn completion_logprobs(items: &[TokenInfo], offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(items.len());
    let mut at = offset;
    for t in items {
        text_offset.push(at);
        at += t.token.len();
    }
    json!({
        "tokens": items.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": items.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": items
            .iter()
            .map(|t| t.top.iter().map(|(token, l)| (token.clone(), json!(l))).collect::<serde_json::Map<_, _>>())
            .collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices})
    }

    fn whole(&self, w: Whole) -> Value {
        let Whole { text, logprobs, finish_reason, usage } = w;
        let has_logprobs = !logprobs.is_empty();
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": if has_logprobs { chat_logprobs(&logprobs) } else { Value::Null },
                "finish_reason": finish_reason,
            }),
            Kind::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": if has_logprobs { completion_logprobs(&logprobs, 0) } else { Value::Null },
                "finish_reason": finish_reason,
            }),
        };
        let mut v = self.envelope(false, json!([choice]));
        v["usage"] = usage_json(&usage);
        v
    }

    /// One streamed chunk with `text` (and optionally logprobs and a finish reason).
    fn chunk(&self, text: &str, logprobs: Option<Value>, finish_reason: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let delta =
                    if finish_reason.is_some() && text.is_empty() { json!({}) } else { json!({"content": text}) };
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason})
            }
            Kind::Completion => json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}),
        };
        self.envelope(true, json!([choice]))
    }
}

fn data(v: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

/// The SSE events of a streamed response: (chat) the assistant role, one chunk per token that adds text,
/// the finish reason, (optionally) usage, then `[DONE]`.
fn sse_events(
    shape: Shape,
    generation: GenerationStream,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let head = match shape.kind {
        Kind::Chat => {
            let mut first = shape.envelope(true, json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]));
            first["usage"] = Value::Null;
            vec![data(&first)]
        }
        Kind::Completion => Vec::new(),
    };
    let GenerationStream { info, events, .. } = generation;
    let mut offset = 0;
    let body = UnboundedReceiverStream::new(events).flat_map(move |event| {
        let out: Vec<Result<Event, Infallible>> = match event {
            GenerationEvent::Token { id, text, logprobs } => {
                let lp = logprobs.map(|lp| {
                    let item = [resolve(&info.tokenizer, id, lp)];
                    match shape.kind {
                        Kind::Chat => chat_logprobs(&item),
                        Kind::Completion => completion_logprobs(&item, offset),
                    }
                });
                offset += text.len();
                if text.is_empty() && lp.is_none() { Vec::new() } else { vec![data(&shape.chunk(&text, lp, None))] }
            }
            GenerationEvent::Done { finish_reason, text, usage } => {
                let mut out = vec![data(&shape.chunk(&text, None, Some(finish_reason.as_str())))];
                if include_usage {
                    let mut last = shape.envelope(true, json!([]));
                    last["usage"] = usage_json(&usage);
                    out.push(data(&last));
                }
                out
            }
            GenerationEvent::Failed(e) => {
                let e = ApiError::from(EngineError::from(e));
                vec![data(&json!({"error": {"message": e.message, "type": "server_error", "code": e.kind}}))]
            }
        };
        stream::iter(out)
    });
    stream::iter(head).chain(body).chain(stream::once(async { Ok(Event::default().data("[DONE]")) }))
}
