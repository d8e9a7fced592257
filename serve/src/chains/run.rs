//! Running a chain: steps in order over a context (`input` and each finished step's output by name),
//! templates rendered with minijinja, and the effects (retrieval, embedding, generation) done by whoever
//! implements [`Effects`] (the engine). Outputs use LangChain's well-known shapes (`Document`, `ai` /
//! `human` / `system` messages) so `RemoteRunnable` revives them as LangChain objects.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use ferroserve_models::json_number::f32_number;
use futures::StreamExt;
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
    /// Runs another chain on `input` (a `map` or `parallel` step), `depth` chains deep.
    fn sub_chain(
        &self,
        name: &str,
        input: Value,
        depth: usize,
    ) -> impl Future<Output = Result<Value, Self::Error>> + Send;
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
    /// What the step produced (the value later steps and the output read under its name).
    pub output: Value,
}

/// Runs `chain` on `input`. With `tokens`, the chain's final generation step streams its text there.
pub async fn run<E: Effects>(
    chain: &Chain,
    input: Value,
    overrides: &Overrides,
    effects: &E,
    tokens: Option<&mpsc::UnboundedSender<String>>,
    depth: usize,
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
        let (value, usage) = run_step(&step.kind, &context, overrides, effects, stream_here, depth)
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
            output: value.clone(),
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
    depth: usize,
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
        StepKind::Map { over, chain, concurrency } => {
            let items = match context.get(over) {
                Some(Value::Array(items)) => items.clone(),
                _ => return Err(ChainError::BadInput(format!("{over:?} is not a list to map over")).into()),
            };
            let outputs: Vec<Value> = futures::stream::iter(items)
                .map(|item| effects.sub_chain(chain, item, depth + 1))
                .buffered(*concurrency)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(StepError::Effect)?;
            Value::Array(outputs)
        }
        StepKind::Parallel { branches } => {
            let input = context.get("input").cloned().unwrap_or(Value::Null);
            let runs = branches.iter().map(|(branch, chain)| {
                let input = input.clone();
                async move { effects.sub_chain(chain, input, depth + 1).await.map(|v| (branch.clone(), v)) }
            });
            let outputs = futures::future::try_join_all(runs).await.map_err(StepError::Effect)?;
            Value::Object(outputs.into_iter().collect())
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
        StepKind::Map { .. } => "map",
        StepKind::Parallel { .. } => "parallel",
        StepKind::Passthrough {} => "passthrough",
    }
}

/// The most template instructions one render may run: far above what a prompt needs, low enough that a
/// runaway loop in a template a client registered fails in milliseconds instead of holding a worker.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

fn render(template: &str, context: &Map<String, Value>) -> Result<String, ChainError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
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
    metadata.insert("score".into(), f32_number(r.score));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Effects that answer from the call itself (the runner's logic is what is tested here; the engine's
    /// effects are tested end to end).
    struct Scripted;

    impl Effects for Scripted {
        type Error = String;

        async fn retrieve(&self, call: RetrieveCall) -> Result<Vec<Retrieved>, String> {
            Ok((0..call.k)
                .map(|i| Retrieved {
                    id: json!(i),
                    score: 1.0 - i as f32 / 10.0,
                    payload: json!({"text": format!("doc {i} for {}", call.query), "n": i})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect())
        }

        async fn embed(&self, _model: &str, text: String) -> Result<Vec<f32>, String> {
            Ok(vec![text.len() as f32])
        }

        async fn sub_chain(&self, name: &str, input: Value, _depth: usize) -> Result<Value, String> {
            Ok(json!({"chain": name, "input": input}))
        }

        async fn generate(
            &self,
            call: GenerateCall,
            tokens: Option<&mpsc::UnboundedSender<String>>,
        ) -> Result<Generated, String> {
            let text = match call.prompt {
                PromptValue::Text(t) => format!("{{\"echo\": {:?}, \"t\": {}}}", t, call.temperature),
                PromptValue::Messages(m) => m.iter().map(|(r, c)| format!("{r}:{c}")).collect::<Vec<_>>().join("|"),
            };
            if let Some(tx) = tokens {
                for piece in text.split_inclusive(' ') {
                    tx.send(piece.to_string()).map_err(|e| e.to_string())?;
                }
            }
            Ok(Generated { text, prompt_tokens: 3, completion_tokens: 5, finish_reason: "stop".into() })
        }
    }

    fn chain(toml: &str) -> Chain {
        Chain::from_toml("t", toml).unwrap()
    }

    async fn go(c: &Chain, input: Value, o: &Overrides) -> Result<RunOutput, RunError<String>> {
        run(c, input, o, &Scripted, None, 0).await
    }

    #[tokio::test]
    async fn steps_see_earlier_outputs_and_the_output_is_shaped() {
        let c = chain(
            r#"configurable = ["k", "temperature"]
[[steps]]
name = "docs"
type = "retrieve"
collection = "c"
query = "{{ input.q }}"
k = 3
[[steps]]
name = "p"
type = "prompt"
template = "{{ docs | length }} docs, first: {{ docs[0].page_content }}"
[[steps]]
name = "g"
type = "generate"
model = "m"
prompt = "p"
[[steps]]
name = "parsed"
type = "parse"
from = "g"
format = "json"
schema = { type = "object", required = ["echo"] }
[output]
answer = "parsed"
docs = "docs"
"#,
        );
        let o = Overrides::parse(&c, Some(&json!({"k": 2, "temperature": 0.5}))).unwrap();
        let out = go(&c, json!({"q": "x"}), &o).await.unwrap();
        assert_eq!(out.output["answer"]["echo"], "2 docs, first: doc 0 for x");
        assert_eq!(out.output["answer"]["t"], 0.5);
        assert_eq!(out.output["docs"][1]["type"], "Document");
        assert_eq!(out.output["docs"][1]["metadata"]["n"], 1);
        assert_eq!(out.steps.iter().map(|s| s.kind).collect::<Vec<_>>(), ["retrieve", "prompt", "generate", "parse"]);
        assert_eq!(out.steps[2].completion_tokens, 5);
        // Overrides the chain does not allow, and bad inputs, are refused.
        assert!(Overrides::parse(&c, Some(&json!({"model": "x"}))).is_err());
        let e = go(&c, json!({"other": 1}), &Overrides::default()).await.unwrap_err();
        assert!(matches!(e, RunError::Chain(ChainError::BadInput(m)) if m.contains("input.q")));
    }

    #[tokio::test]
    async fn parse_failures_name_the_step() {
        let c = chain(
            r#"[[steps]]
name = "p"
type = "prompt"
messages = [{ role = "user", content = "{{ input.q }}" }]
[[steps]]
name = "g"
type = "generate"
model = "m"
prompt = "p"
[[steps]]
name = "num"
type = "parse"
from = "g"
format = "regex"
pattern = "user:(?P<n>[0-9]+)"
"#,
        );
        let out = go(&c, json!({"q": "42"}), &Overrides::default()).await.unwrap();
        assert_eq!(out.output, json!({"n": "42"}));
        let e = go(&c, json!({"q": "none"}), &Overrides::default()).await.unwrap_err();
        assert!(
            matches!(e, RunError::Chain(ChainError::Failed(m)) if m.starts_with("step \"num\"") && m.contains("no match"))
        );
    }

    #[tokio::test]
    async fn the_final_generation_streams_and_map_keeps_order() {
        let c = chain(
            "[[steps]]\nname = \"p\"\ntype = \"prompt\"\ntemplate = \"a b c\"\n[[steps]]\nname = \"g\"\ntype = \"generate\"\nmodel = \"m\"\nprompt = \"p\"\n",
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let out = run(&c, json!({}), &Overrides::default(), &Scripted, Some(&tx), 0).await.unwrap();
        drop(tx);
        let mut pieces = Vec::new();
        while let Some(p) = rx.recv().await {
            pieces.push(p);
        }
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), out.output["content"].as_str().unwrap());
        let m =
            chain("[[steps]]\nname = \"each\"\ntype = \"map\"\nover = \"input\"\nchain = \"sub\"\nconcurrency = 3\n");
        let out = go(&m, json!([1, 2, 3, 4, 5]), &Overrides::default()).await.unwrap();
        let inputs: Vec<Value> = out.output.as_array().unwrap().iter().map(|o| o["input"].clone()).collect();
        assert_eq!(inputs, vec![json!(1), json!(2), json!(3), json!(4), json!(5)]);
    }
}
