//! Chains over HTTP with LangServe's contract, so LangChain's `RemoteRunnable("…/chains/{name}")` works:
//! `POST /chains/{name}/invoke`, `/batch`, `/stream` (SSE: `metadata` with the `run_id`, `data` chunks, an
//! `error` with `status_code` and `message`, `end`), `/stream_log` (the run log as JSON Patch operations),
//! `GET …/input_schema`, `…/output_schema`,
//! `…/config_schema`; and the registry: `GET /chains`, `PUT|GET|DELETE /chains/{name}`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use super::scheduling::Scheduling;
use super::schemas::{
    BatchResponse, ChainDefinition, ChainList, ChainStatus, InvokeResponse, LangServeErrorBody, SseEvent,
};
use crate::chains::ChainDef;
use crate::engine::{ChainStream, EngineError, RunOutput};
use crate::utc;

/// An error as LangServe (FastAPI) writes it: `{"detail": "..."}` with the status.
pub struct LangServeError(ApiError);

impl<E: Into<ApiError>> From<E> for LangServeError {
    fn from(e: E) -> Self {
        LangServeError(e.into())
    }
}

impl IntoResponse for LangServeError {
    fn into_response(self) -> Response {
        (self.0.status, Json(json!({"detail": self.0.message}))).into_response()
    }
}

type Answer = Result<Response, LangServeError>;

/// A LangServe request: `input` and `config` (`configurable` is read); other fields (`kwargs`) are ignored,
/// as LangServe ignores them.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"input": {"question": "What is a terminal multiplexer?"}}))]
pub struct InvokeBody {
    /// The chain's input (its `input_schema`).
    #[schema(value_type = Value)]
    input: Value,
    /// `configurable` overrides the fields the chain allows (its `config_schema`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
}

/// A `/stream_log` request: the run's `input` and `config` (as for `/invoke`), and LangChain's filters on which
/// steps the log shows. A step is shown when no `include_*` is given or one of them matches it (its name, its
/// run type, or one of its tags), and no `exclude_*` matches it; the root run and its streamed output are
/// always there (LangChain's `_RootEventFilter`).
#[derive(Deserialize, ToSchema, Default)]
#[schema(example = json!({"input": {"question": "What is a terminal multiplexer?"}, "include_types": ["retriever"]}))]
pub struct StreamLogBody {
    /// The chain's input (its `input_schema`).
    #[schema(value_type = Value)]
    input: Value,
    /// `configurable` overrides the fields the chain allows (its `config_schema`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// Show the steps with these names.
    #[serde(default)]
    include_names: Option<Vec<String>>,
    /// Show the steps of these run types (`retriever`, `prompt`, `llm`, `parser`, `embedding`, `chain`).
    #[serde(default)]
    include_types: Option<Vec<String>>,
    /// Show the steps with one of these tags (step `i` of a chain is tagged `seq:step:i`, from 1).
    #[serde(default)]
    include_tags: Option<Vec<String>>,
    /// Hide the steps with these names.
    #[serde(default)]
    exclude_names: Option<Vec<String>>,
    /// Hide the steps of these run types.
    #[serde(default)]
    exclude_types: Option<Vec<String>>,
    /// Hide the steps with one of these tags.
    #[serde(default)]
    exclude_tags: Option<Vec<String>>,
}

impl StreamLogBody {
    /// The run's part of the request, taken out; what stays is the filter.
    fn take_run(&mut self) -> InvokeBody {
        InvokeBody { input: std::mem::take(&mut self.input), config: self.config.take() }
    }

    /// Whether the log shows a step with this name, run type and tags.
    fn shows(&self, name: &str, run_type: &str, tags: &[String]) -> bool {
        let has = |list: &Option<Vec<String>>, value: &str| list.as_ref().is_some_and(|l| l.iter().any(|v| v == value));
        let has_tag = |list: &Option<Vec<String>>| tags.iter().any(|t| has(list, t));
        let no_include = self.include_names.is_none() && self.include_types.is_none() && self.include_tags.is_none();
        let included = no_include
            || has(&self.include_names, name)
            || has(&self.include_types, run_type)
            || has_tag(&self.include_tags);
        included
            && !has(&self.exclude_names, name)
            && !has(&self.exclude_types, run_type)
            && !has_tag(&self.exclude_tags)
    }
}

/// LangChain's run type for a step kind, the vocabulary its run-log filters and tracers use.
fn run_type(kind: &str) -> &'static str {
    match kind {
        "retrieve" => "retriever",
        "prompt" => "prompt",
        "generate" => "llm",
        "parse" => "parser",
        "embed" => "embedding",
        _ => "chain",
    }
}

/// The run's deadline header, described for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct DeadlineHeader {
    /// Stop the run (the step running, a generation included) and answer 504 after this many milliseconds.
    #[param(rename = "x-ferroserve-timeout-ms", value_type = u64, required = false, minimum = 1)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
pub struct BatchBody {
    #[schema(value_type = Vec<Value>)]
    inputs: Vec<Value>,
    /// One config for all, or one per input.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    config: Option<Value>,
}

/// A run id in UUID form (version 4 layout): time, process and a counter, mixed (splitmix64).
fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (mix(nanos ^ (u64::from(std::process::id()) << 40)), mix(nanos.rotate_left(17) ^ n));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn configurable(config: Option<&Value>) -> Option<&Value> {
    config.and_then(|c| c.get("configurable"))
}

/// The run's deadline, from the `x-ferroserve-timeout-ms` header.
fn deadline(headers: &HeaderMap) -> Result<Option<Instant>, LangServeError> {
    Ok(Scheduling::from_request(headers, None, None, None)?.timeout.map(|t| Instant::now() + t))
}

fn metadata(run_id: &str, run: &RunOutput) -> Value {
    let steps: Vec<Value> = run
        .steps
        .iter()
        .map(|s| {
            json!({"name": s.name, "type": s.kind, "seconds": s.seconds, "output": s.output,
                   "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens})
        })
        .collect();
    json!({"run_id": run_id, "feedback_tokens": [], "steps": steps})
}

/// Runs the chain once (LangServe `invoke`).
#[utoipa::path(post, path = "/chains/{name}/invoke", tag = "Chains", params(("name" = String, Path, description = "The chain"), DeadlineHeader), request_body = InvokeBody,
    responses((status = 200, description = "The output and each step's timing", body = InvokeResponse),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody<InvokeBody, LangServeError>,
) -> Answer {
    let run =
        state.engine.run_chain(&name, body.input, configurable(body.config.as_ref()), deadline(&headers)?).await?;
    let id = run_id();
    Ok(Json(json!({"output": run.output, "metadata": metadata(&id, &run)})).into_response())
}

/// Runs the chain on each input, concurrently (LangServe `batch`).
#[utoipa::path(post, path = "/chains/{name}/batch", tag = "Chains", params(("name" = String, Path, description = "The chain"), DeadlineHeader), request_body = BatchBody,
    responses((status = 200, description = "One output per input, in order", body = BatchResponse),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody<BatchBody, LangServeError>,
) -> Answer {
    let configs: Vec<Option<Value>> = match body.config {
        Some(Value::Array(list)) => {
            if list.len() != body.inputs.len() {
                let message = format!("config: {} configs for {} inputs", list.len(), body.inputs.len());
                return Err(EngineError::InvalidInput(message).into());
            }
            list.into_iter().map(Some).collect()
        }
        one => vec![one; body.inputs.len()],
    };
    let engine = &state.engine;
    let deadline = deadline(&headers)?;
    let runs = futures::future::try_join_all(
        body.inputs
            .into_iter()
            .zip(&configs)
            .map(|(input, c)| engine.run_chain(&name, input, configurable(c.as_ref()), deadline)),
    )
    .await?;
    let ids: Vec<String> = runs.iter().map(|_| run_id()).collect();
    let responses: Vec<Value> = runs.iter().zip(&ids).map(|(r, id)| metadata(id, r)).collect();
    let outputs: Vec<Value> = runs.into_iter().map(|r| r.output).collect();
    Ok(Json(json!({"output": outputs, "metadata": {"run_ids": ids, "responses": responses}})).into_response())
}

/// Runs the chain and streams it (LangServe `stream`): `metadata` once with the `run_id`, `data` chunks (a
/// final chat step streams its tokens), `error` with `status_code` and `message`, then `end`.
#[utoipa::path(post, path = "/chains/{name}/stream", tag = "Chains", params(("name" = String, Path, description = "The chain"), DeadlineHeader), request_body = InvokeBody,
    responses((status = 200, description = "Server-sent events", content_type = "text/event-stream", body = SseEvent),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn stream_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody<InvokeBody, LangServeError>,
) -> Answer {
    let (run_id, sent) = start(&state, &name, &headers, body)?;
    let events = sse_events(run_id, sent);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

fn event(name: &str, data: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// What a streamed run sends, before `/stream` or `/stream_log` writes it as events.
enum Sent {
    /// A piece of the final generation step's text, as an `AIMessageChunk` (under the output key when the
    /// output is named).
    Chunk(Value),
    /// The run ended: what of the output was not streamed (the last chunk with the usage, or the whole
    /// output), the whole output, and the run's steps.
    Done { rest: Value, output: Value, run: RunOutput },
    /// The run failed: LangServe's `status_code` and `message`.
    Failed(Value),
}

/// Starts a streamed run of chain `name`: its id, and what it sends.
fn start(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: InvokeBody,
) -> Result<(String, impl Stream<Item = Sent> + use<>), LangServeError> {
    let chain = state.engine.chain(name)?;
    let key = chain.streamed().and_then(|(key, _)| key.map(str::to_string));
    let streams_text = chain.streamed().is_some();
    let running =
        state.engine.stream_chain(name, body.input, configurable(body.config.as_ref()), deadline(headers)?)?;
    let id = run_id();
    let chunk_id = format!("run-{id}");
    Ok((id, sent(running, streams_text, key, chunk_id)))
}

/// The run's text pieces as they come, then how it ended.
fn sent(running: ChainStream, streams_text: bool, key: Option<String>, chunk_id: String) -> impl Stream<Item = Sent> {
    let ChainStream { tokens, done } = running;
    let wrap = {
        let key = key.clone();
        move |chunk: Value| match &key {
            Some(k) => json!({ k.as_str(): chunk }),
            None => chunk,
        }
    };
    let text = UnboundedReceiverStream::new(tokens).map({
        let chunk_id = chunk_id.clone();
        move |piece| Sent::Chunk(wrap(json!({"content": piece, "type": "AIMessageChunk", "id": chunk_id})))
    });
    let tail = stream::once(async move {
        match done.await {
            Ok(Ok(mut run)) => {
                let output = std::mem::take(&mut run.output);
                let rest = match (streams_text, output.clone(), &key) {
                    // The text went out piece by piece; the last chunk carries the usage.
                    (true, output, None) => last_chunk(&output, &chunk_id),
                    (true, Value::Object(mut named), Some(k)) => {
                        if let Some(last) = named.remove(k).map(|o| last_chunk(&o, &chunk_id)) {
                            named.insert(k.clone(), last);
                        }
                        Value::Object(named)
                    }
                    (_, output, _) => output,
                };
                Sent::Done { rest, output, run }
            }
            Ok(Err(e)) => {
                let e = ApiError::from(e);
                Sent::Failed(json!({"status_code": e.status.as_u16(), "message": e.message}))
            }
            Err(_) => Sent::Failed(json!({"status_code": 500, "message": "the chain's task stopped"})),
        }
    });
    text.chain(tail)
}

/// `/stream`: `metadata`, then the final generation step's text as `AIMessageChunk`s and whatever of the
/// output was not streamed, a second `metadata` with each step's output and timing, then `end` — or an
/// `error` event.
fn sse_events(run_id: String, sent: impl Stream<Item = Sent>) -> impl Stream<Item = Result<Event, Infallible>> {
    let head = event("metadata", &json!({"run_id": run_id}));
    let body = sent.flat_map(move |s| {
        let events = match s {
            Sent::Chunk(c) => vec![event("data", &c)],
            // A second `metadata` (LangServe's clients skip it) with each step's output and timing.
            Sent::Done { rest, run, .. } => vec![event("data", &rest), event("metadata", &metadata(&run_id, &run))],
            Sent::Failed(e) => vec![event("error", &e)],
        };
        stream::iter(events)
    });
    stream::once(async { head }).chain(body).chain(stream::once(async { Ok(Event::default().event("end")) }))
}

/// `/stream_log`: the run as LangChain's run log, in JSON Patch operations (`data` events of `{"ops": [...]}`,
/// which `RemoteRunnable.astream_log` applies): the empty log, each streamed chunk added to
/// `streamed_output`, then each step as a sub-run under `logs` (its output, and its start and end laid end to
/// end from the run's start by the steps' durations) and the `final_output`; then `end` — or an `error` event.
fn stream_log_events(
    name: String,
    run_id: String,
    filter: StreamLogBody,
    sent: impl Stream<Item = Sent>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let ops = |ops: Vec<Value>| event("data", &json!({ "ops": ops }));
    let started = SystemTime::now();
    let head = ops(vec![json!({"op": "replace", "path": "", "value": {
        "id": run_id, "name": name, "type": "chain", "streamed_output": [], "final_output": null, "logs": {}}})]);
    let add = |value: Value| json!({"op": "add", "path": "/streamed_output/-", "value": value});
    let body = sent.map(move |s| match s {
        Sent::Chunk(c) => ops(vec![add(c)]),
        Sent::Done { rest, output, run } => {
            let mut at = started;
            let mut list: Vec<Value> = Vec::new();
            for (i, step) in run.steps.iter().enumerate() {
                let end = at + std::time::Duration::from_secs_f64(step.seconds);
                let (run_type, tags) = (run_type(step.kind), vec![format!("seq:step:{}", i + 1)]);
                if filter.shows(&step.name, run_type, &tags) {
                    let log = json!({
                        "id": format!("{run_id}-{}", step.name), "name": step.name, "type": run_type,
                        "tags": tags, "metadata": {}, "start_time": utc::iso8601(at), "end_time": utc::iso8601(end),
                        "streamed_output": [], "streamed_output_str": [], "final_output": step.output,
                    });
                    list.push(
                        json!({"op": "add", "path": format!("/logs/{}", pointer_token(&step.name)), "value": log}),
                    );
                }
                at = end;
            }
            list.push(add(rest));
            list.push(json!({"op": "replace", "path": "/final_output", "value": output}));
            ops(list)
        }
        Sent::Failed(e) => event("error", &e),
    });
    stream::once(async { head }).chain(body).chain(stream::once(async { Ok(Event::default().event("end")) }))
}

/// A name as one JSON Pointer token (RFC 6901: `~` as `~0`, `/` as `~1`).
fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// An empty `AIMessageChunk` with the message's metadata (finish reason, token usage).
fn last_chunk(message: &Value, id: &str) -> Value {
    json!({
        "content": "", "type": "AIMessageChunk", "id": id,
        "response_metadata": message.get("response_metadata").cloned().unwrap_or(json!({})),
        "usage_metadata": message.get("usage_metadata").cloned().unwrap_or(Value::Null),
    })
}

/// Runs the chain and streams its run log (LangServe `stream_log`, for `RemoteRunnable.astream_log`): JSON
/// Patch operations over LangChain's run log, with each step the request's `include_*` / `exclude_*` filters
/// keep as a sub-run.
#[utoipa::path(post, path = "/chains/{name}/stream_log", tag = "Chains", params(("name" = String, Path, description = "The chain"), DeadlineHeader), request_body = StreamLogBody,
    responses((status = 200, description = "Server-sent events", content_type = "text/event-stream", body = SseEvent),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn stream_log(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(mut body, _): JsonBody<StreamLogBody, LangServeError>,
) -> Answer {
    let (run_id, sent) = start(&state, &name, &headers, body.take_run())?;
    let events = stream_log_events(name, run_id, body, sent);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// The JSON Schema of the chain's input.
#[utoipa::path(get, path = "/chains/{name}/input_schema", tag = "Chains", params(("name" = String, Path, description = "The chain")),
    responses((status = 200, description = "A JSON Schema", body = Object),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn input_schema(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    Ok(Json(state.engine.chain(&name)?.input_schema()).into_response())
}

/// The JSON Schema of the chain's output.
#[utoipa::path(get, path = "/chains/{name}/output_schema", tag = "Chains", params(("name" = String, Path, description = "The chain")),
    responses((status = 200, description = "A JSON Schema", body = Object),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn output_schema(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    Ok(Json(state.engine.chain(&name)?.output_schema()).into_response())
}

/// The `configurable` fields the chain allows.
#[utoipa::path(get, path = "/chains/{name}/config_schema", tag = "Chains", params(("name" = String, Path, description = "The chain")),
    responses((status = 200, description = "A JSON Schema", body = Object),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn config_schema(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    let chain = state.engine.chain(&name)?;
    let types = |field: &str| match field {
        "model" => json!({"title": "Model", "type": "string"}),
        "temperature" => json!({"title": "Temperature", "type": "number"}),
        _ => json!({"title": field, "type": "integer", "minimum": 1}),
    };
    let properties: serde_json::Map<String, Value> =
        chain.def.configurable.iter().map(|f| (f.clone(), types(f))).collect();
    Ok(Json(json!({
        "title": format!("{name}Config"), "type": "object",
        "properties": {"configurable": {"title": "Configurable", "type": "object", "properties": properties}},
    }))
    .into_response())
}

/// The chains this server runs.
#[utoipa::path(get, path = "/chains", tag = "Chains",
    responses((status = 200, description = "Each chain's name, description and number of steps", body = ChainList)))]
pub async fn list(State(state): State<AppState>) -> Answer {
    let chains: Vec<Value> = state
        .engine
        .chain_names()
        .into_iter()
        .filter_map(|n| state.engine.chain(&n).ok())
        .map(|c| json!({"name": c.name, "description": c.def.description, "steps": c.def.steps.len()}))
        .collect();
    Ok(Json(json!({"chains": chains})).into_response())
}

/// A chain's definition.
#[utoipa::path(get, path = "/chains/{name}", tag = "Chains", params(("name" = String, Path, description = "The chain")),
    responses((status = 200, description = "The definition (the fields of its TOML file)", body = ChainDefinition),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn get_chain(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    let chain = state.engine.chain(&name)?;
    Ok(Json(json!({"name": chain.name, "definition": chain.def})).into_response())
}

/// Registers a chain from its definition (JSON, the same fields as the TOML files); persisted.
#[utoipa::path(put, path = "/chains/{name}", tag = "Chains", params(("name" = String, Path, description = "The chain")),
    request_body(content = Object, description = "The chain's definition: the fields of a chain TOML file, as JSON"),
    responses((status = 200, description = "Registered (and persisted)", body = ChainStatus),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn put_chain(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(def, _): JsonBody<ChainDef, LangServeError>,
) -> Answer {
    state.engine.put_chain(&name, def)?;
    Ok(Json(json!({"name": name, "status": "registered"})).into_response())
}

/// Removes a chain registered through the API (and its persisted file).
#[utoipa::path(delete, path = "/chains/{name}", tag = "Chains", params(("name" = String, Path, description = "The chain")),
    responses((status = 200, description = "Deleted", body = ChainStatus),
              (status = "4XX", description = "No such chain, or an input the chain refuses", body = LangServeErrorBody),
              (status = "5XX", description = "A step failed, or an upstream endpoint did", body = LangServeErrorBody)))]
pub async fn delete_chain(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    if !state.engine.delete_chain(&name)? {
        return Err(EngineError::ChainNotFound(name).into());
    }
    Ok(Json(json!({"name": name, "status": "deleted"})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(mut body: Value) -> StreamLogBody {
        body["input"] = json!({"question": "q"});
        serde_json::from_value(body).expect("a filter")
    }

    #[test]
    fn without_filters_every_step_shows() {
        assert!(StreamLogBody::default().shows("sources", "retriever", &["seq:step:1".into()]));
    }

    #[test]
    fn includes_match_by_name_type_or_tag_and_excludes_win() {
        let tags = ["seq:step:2".to_string()];
        let f = filter(json!({"include_types": ["retriever"], "include_names": ["answer"]}));
        assert!(f.shows("sources", "retriever", &tags));
        assert!(f.shows("answer", "llm", &tags));
        assert!(!f.shows("prompt", "prompt", &tags));
        assert!(filter(json!({"include_tags": ["seq:step:2"]})).shows("prompt", "prompt", &tags));
        assert!(!filter(json!({"include_tags": ["seq:step:1"]})).shows("prompt", "prompt", &tags));
        let f = filter(json!({"include_types": ["retriever", "llm"], "exclude_names": ["answer"]}));
        assert!(!f.shows("answer", "llm", &tags));
        assert!(!filter(json!({"exclude_tags": ["seq:step:2"]})).shows("prompt", "prompt", &tags));
        assert!(!filter(json!({"exclude_types": ["prompt"]})).shows("prompt", "prompt", &tags));
    }

    #[test]
    fn step_kinds_take_langchain_run_types() {
        let kinds = ["retrieve", "prompt", "generate", "parse", "embed", "map"];
        assert_eq!(kinds.map(run_type), ["retriever", "prompt", "llm", "parser", "embedding", "chain"]);
    }

    #[test]
    fn a_stream_log_request_reads_its_run_and_its_filters() {
        let mut body: StreamLogBody = serde_json::from_value(json!({
            "input": {"question": "q"}, "config": {}, "diff": true, "include_types": ["llm"], "exclude_tags": null
        }))
        .expect("a request");
        let run = body.take_run();
        assert_eq!((run.input, run.config), (json!({"question": "q"}), Some(json!({}))));
        assert!(body.shows("answer", "llm", &[]) && !body.shows("sources", "retriever", &[]));
        let wrong = serde_json::from_value::<StreamLogBody>(json!({"input": 1, "include_names": 5}));
        assert!(wrong.is_err_and(|e| e.to_string().contains("expected a sequence")));
    }
}
