//! Running a chain: steps in order over a context (`input` and each finished step's output by name),
//! templates rendered with minijinja, and the effects (retrieval, embedding, generation) done by whoever
//! implements [`Effects`] (the engine). Outputs use LangChain's well-known shapes (`Document`, `ai` /
//! `human` / `system` messages) so `RemoteRunnable` revives them as LangChain objects.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use minijinja::Environment;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::definition::{Chain, MessageTemplate, Output, ParseFormat, StepKind};
use super::schema;
use super::{ChainError, RunError};
use crate::remote::Endpoint;

/// A prompt for a generation step.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptValue {
    Text(String),
    /// `(role, content)`: `system`, `user` or `assistant`.
    Messages(Vec<(String, String)>),
}

/// What a generation step asks for.
#[derive(Debug, Clone)]
pub struct GenerateCall {
    pub model: String,
    /// `None`: a model of this server.
    pub endpoint: Option<Endpoint>,
    pub prompt: PromptValue,
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub stop: Vec<String>,
}

/// What a generation step got.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: String,
}

/// A retrieval step's request.
#[derive(Debug, Clone)]
pub struct RetrieveCall {
    pub collection: String,
    /// `None`: this server's collection.
    pub qdrant: Option<Endpoint>,
    pub embedding_model: Option<String>,
    pub query: String,
    pub k: usize,
    pub filter: Option<Value>,
    pub score_threshold: Option<f32>,
}

/// A retrieved point: its payload and score.
#[derive(Debug, Clone)]
pub struct Retrieved {
    pub id: Value,
    pub score: f32,
    pub payload: Map<String, Value>,
}

/// The side effects steps need; the engine implements them, with its own errors.
pub trait Effects: Sync {
    type Error: Send;
    fn retrieve(&self, call: RetrieveCall) -> impl Future<Output = Result<Vec<Retrieved>, Self::Error>> + Send;
    fn embed(&self, model: &str, text: String) -> impl Future<Output = Result<Vec<f32>, Self::Error>> + Send;
    /// Generates; each piece of text also goes to `tokens` when given (streaming).
    fn generate(
        &self,
        call: GenerateCall,
        tokens: Option<&mpsc::UnboundedSender<String>>,
    ) -> impl Future<Output = Result<Generated, Self::Error>> + Send;
}

/// A step's failure before it is named.
enum StepError<E> {
    Chain(ChainError),
    Effect(E),
}

impl<E> From<ChainError> for StepError<E> {
    fn from(e: ChainError) -> Self {
        StepError::Chain(e)
    }
}

/// `config.configurable` values a chain allows.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub model: Option<String>,
    pub k: Option<usize>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<usize>,
}

impl Overrides {
    /// Reads `configurable`, refusing fields the chain does not allow.
    pub fn parse(chain: &Chain, configurable: Option<&Value>) -> Result<Self, ChainError> {
        let mut o = Overrides::default();
        let Some(Value::Object(c)) = configurable else { return Ok(o) };
        for (k, v) in c {
            if !chain.def.configurable.contains(k) {
                return Err(ChainError::BadInput(format!(
                    "config.configurable.{k}: chain {:?} allows {:?}",
                    chain.name, chain.def.configurable
                )));
            }
            let bad = || ChainError::BadInput(format!("config.configurable.{k}: {v} is not valid"));
            match k.as_str() {
                "model" => o.model = Some(v.as_str().ok_or_else(bad)?.to_string()),
                "k" => o.k = Some(v.as_u64().filter(|k| *k > 0).ok_or_else(bad)? as usize),
                "temperature" => o.temperature = Some(v.as_f64().ok_or_else(bad)? as f32),
                "max_tokens" => o.max_tokens = Some(v.as_u64().ok_or_else(bad)? as usize),
                _ => return Err(bad()),
            }
        }
        Ok(o)
    }
}

/// A finished run: the output, and per-step timings and token counts.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub output: Value,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: String,
    pub kind: &'static str,
    pub seconds: f64,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// Runs `chain` on `input`. With `tokens`, the chain's final generation step streams its text there.
pub async fn run<E: Effects>(
    chain: &Chain,
    input: Value,
    overrides: &Overrides,
    effects: &E,
    tokens: Option<&mpsc::UnboundedSender<String>>,
) -> Result<RunOutput, RunError<E::Error>> {
    if let Some(s) = &chain.def.input_schema {
        schema::validate(&input, s).map_err(|e| ChainError::BadInput(format!("input: {e}")))?;
    } else if !chain.input_fields.is_empty() {
        let Value::Object(o) = &input else {
            return Err(ChainError::BadInput(format!("input must be an object with {:?}", chain.input_fields)).into());
        };
        if let Some(missing) = chain.input_fields.iter().find(|f| !o.contains_key(*f)) {
            return Err(ChainError::BadInput(format!("input.{missing} is missing")).into());
        }
    }
    let streamed_step = chain.streamed().map(|(_, step)| step);
    let mut context = Map::new();
    context.insert("input".into(), input);
    let mut reports = Vec::with_capacity(chain.def.steps.len());
    for step in &chain.def.steps {
        let started = Instant::now();
        let kind = kind_name(&step.kind);
        let span = tracing::info_span!("chain_step", chain = %chain.name, step = %step.name, kind);
        let stream_here = tokens.filter(|_| streamed_step == Some(step.name.as_str()));
        let (value, usage) = run_step(&step.kind, &context, overrides, effects, stream_here)
            .instrument(span)
            .await
            .map_err(|e| match e {
                StepError::Chain(e) => RunError::Chain(e.in_step(&step.name)),
                StepError::Effect(error) => RunError::Step { step: step.name.clone(), error },
            })?;
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!("ferroserve_chain_step_seconds", "chain" => chain.name.clone(), "step" => step.name.clone())
            .record(seconds);
        reports.push(StepReport {
            name: step.name.clone(),
            kind,
            seconds,
            prompt_tokens: usage.0,
            completion_tokens: usage.1,
        });
        context.insert(step.name.clone(), value);
    }
    let output = match &chain.def.output {
        Some(Output::Named(map)) => Value::Object(
            map.iter().map(|(k, s)| (k.clone(), context.get(s).cloned().unwrap_or(Value::Null))).collect(),
        ),
        Some(Output::Step(s)) => context.remove(s).unwrap_or(Value::Null),
        None => chain.def.steps.last().and_then(|s| context.remove(&s.name)).unwrap_or(Value::Null),
    };
    Ok(RunOutput { output, steps: reports })
}

/// One step's output and its (prompt, completion) tokens.
async fn run_step<E: Effects>(
    kind: &StepKind,
    context: &Map<String, Value>,
    overrides: &Overrides,
    effects: &E,
    tokens: Option<&mpsc::UnboundedSender<String>>,
) -> Result<(Value, (usize, usize)), StepError<E::Error>> {
    let value = match kind {
        StepKind::Prompt { template, messages } => match template {
            Some(t) => Value::String(render(t, context)?),
            None => messages_json(messages, context)?,
        },
        StepKind::Embed { model, text } => {
            json!(effects.embed(model, render(text, context)?).await.map_err(StepError::Effect)?)
        }
        StepKind::Retrieve { collection, qdrant, embedding_model, query, k, filter, score_threshold, content_key } => {
            let call = RetrieveCall {
                collection: collection.clone(),
                qdrant: qdrant.clone(),
                embedding_model: embedding_model.clone(),
                query: render(query, context)?,
                k: overrides.k.unwrap_or(*k),
                filter: filter.as_ref().map(|f| render_json(f, context)).transpose()?,
                score_threshold: *score_threshold,
            };
            let found = effects.retrieve(call).await.map_err(StepError::Effect)?;
            Value::Array(found.into_iter().map(|r| document(r, content_key)).collect())
        }
        StepKind::Generate { model, endpoint, prompt, max_tokens, temperature, stop } => {
            let call = GenerateCall {
                model: overrides.model.clone().unwrap_or_else(|| model.clone()),
                endpoint: endpoint.clone(),
                prompt: prompt_value(context.get(prompt))?,
                max_tokens: overrides.max_tokens.or(*max_tokens),
                temperature: overrides.temperature.or(*temperature).unwrap_or(0.0),
                stop: stop.clone(),
            };
            let out = effects.generate(call, tokens).await.map_err(StepError::Effect)?;
            return Ok((ai_message(&out), (out.prompt_tokens, out.completion_tokens)));
        }
        StepKind::Parse { from, format, schema: wanted, pattern } => {
            parse(&text_of(context.get(from)), *format, wanted.as_ref(), pattern.as_deref())?
        }
        StepKind::Assign { values } => {
            let mut out = Map::new();
            for (k, t) in values {
                out.insert(k.clone(), Value::String(render(t, context)?));
            }
            Value::Object(out)
        }
        StepKind::Passthrough {} => context.get("input").cloned().unwrap_or(Value::Null),
    };
    Ok((value, (0, 0)))
}

fn kind_name(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::Prompt { .. } => "prompt",
        StepKind::Embed { .. } => "embed",
        StepKind::Retrieve { .. } => "retrieve",
        StepKind::Generate { .. } => "generate",
        StepKind::Parse { .. } => "parse",
        StepKind::Assign { .. } => "assign",
        StepKind::Passthrough {} => "passthrough",
    }
}

fn render(template: &str, context: &Map<String, Value>) -> Result<String, ChainError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, minijinja::Value::from_serialize(context))
        .map_err(|e| ChainError::BadInput(format!("template: {e}")))
}

/// A JSON value whose strings are templates (a retrieval filter).
fn render_json(v: &Value, context: &Map<String, Value>) -> Result<Value, ChainError> {
    Ok(match v {
        Value::String(s) => Value::String(render(s, context)?),
        Value::Array(items) => Value::Array(items.iter().map(|i| render_json(i, context)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, i)| Ok((k.clone(), render_json(i, context)?))).collect::<Result<_, ChainError>>()?,
        ),
        other => other.clone(),
    })
}

/// Rendered messages in LangChain's shape (`{"type": "human", "content"}`).
fn messages_json(messages: &[MessageTemplate], context: &Map<String, Value>) -> Result<Value, ChainError> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let kind = match m.role.as_str() {
            "system" => "system",
            "assistant" => "ai",
            _ => "human",
        };
        out.push(json!({"type": kind, "content": render(&m.content, context)?}));
    }
    Ok(Value::Array(out))
}

/// A prompt from an earlier step's output: a string, or a list of messages.
fn prompt_value(v: Option<&Value>) -> Result<PromptValue, ChainError> {
    match v {
        Some(Value::String(s)) => Ok(PromptValue::Text(s.clone())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| {
                let content = m.get("content").and_then(Value::as_str).unwrap_or_default().to_string();
                let role = match m.get("type").and_then(Value::as_str) {
                    Some("system") => "system",
                    Some("ai") => "assistant",
                    _ => "user",
                };
                Ok((role.to_string(), content))
            })
            .collect::<Result<_, _>>()
            .map(PromptValue::Messages),
        Some(other) => Ok(PromptValue::Text(text_of(Some(other)))),
        None => Err(ChainError::BadInput("the prompt step has no output".into())),
    }
}

/// The text of a value: a string, a message's content, or JSON.
fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) if o.get("content").is_some_and(Value::is_string) => {
            o["content"].as_str().unwrap_or_default().to_string()
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn document(r: Retrieved, content_key: &str) -> Value {
    let mut metadata = r.payload;
    let content = match metadata.remove(content_key) {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    metadata.insert("id".into(), r.id.clone());
    metadata.insert("score".into(), json!(r.score));
    json!({"page_content": content, "metadata": metadata, "type": "Document", "id": r.id.to_string()})
}

fn ai_message(out: &Generated) -> Value {
    json!({
        "content": out.text, "type": "ai", "additional_kwargs": {},
        "response_metadata": {"finish_reason": out.finish_reason},
        "id": null, "tool_calls": [], "invalid_tool_calls": [],
        "usage_metadata": {
            "input_tokens": out.prompt_tokens, "output_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens,
        },
    })
}

fn parse(text: &str, format: ParseFormat, schema: Option<&Value>, pattern: Option<&str>) -> Result<Value, ChainError> {
    match format {
        ParseFormat::String => Ok(Value::String(text.to_string())),
        ParseFormat::Json => {
            // Models wrap JSON in prose or code fences: take the outermost object or array.
            let start = text.find(['{', '[']).unwrap_or(0);
            let end = text.rfind(['}', ']']).map_or(text.len(), |e| e + 1);
            let value: Value = serde_json::from_str(text.get(start..end).unwrap_or(text))
                .map_err(|e| ChainError::Failed(format!("the text is not JSON ({e}): {text:?}")))?;
            if let Some(s) = schema {
                schema::validate(&value, s)
                    .map_err(|e| ChainError::Failed(format!("JSON does not match the schema: {e}")))?;
            }
            Ok(value)
        }
        ParseFormat::Regex => {
            let re = regex::Regex::new(pattern.unwrap_or_default()).map_err(|e| ChainError::Failed(e.to_string()))?;
            let caps = re.captures(text).ok_or_else(|| ChainError::Failed(format!("no match in {text:?}")))?;
            let named: BTreeMap<&str, &str> =
                re.capture_names().flatten().filter_map(|n| Some((n, caps.name(n)?.as_str()))).collect();
            Ok(if named.is_empty() { json!(caps.get(0).map_or("", |m| m.as_str())) } else { json!(named) })
        }
    }
}
