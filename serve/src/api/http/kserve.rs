//! KServe v2 / Open Inference Protocol over REST, for every model: tensor models (ONNX graphs) by their
//! named tensors; embedding models with a BYTES `text` input and an FP32 `embedding` output; generation models
//! with a BYTES `text_input` and a BYTES `text_output` (`max_tokens` and `temperature` from the request's
//! parameters). JSON tensors (flat or nested `data`) and Triton's binary tensor extension
//! (`Inference-Header-Content-Length`, `binary_data_size` per input, `binary_data` per output) in both
//! directions. Errors are `{"error": "..."}` with the status.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferroserve_models::Task;
use ferroserve_models::onnx::{ElementType, NamedTensor, TensorData, TensorSpec};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::cache::CacheMode;
use crate::engine::{EmbedRequest, EngineError, GenerateRequest};
use crate::generation::{GenerationEvent, Prompt};

const HEADER_LENGTH: &str = "inference-header-content-length";

/// An error in KServe's shape.
pub struct KserveError(ApiError);

impl<E: Into<ApiError>> From<E> for KserveError {
    fn from(e: E) -> Self {
        KserveError(e.into())
    }
}

impl IntoResponse for KserveError {
    fn into_response(self) -> Response {
        (self.0.status, Json(json!({"error": self.0.message}))).into_response()
    }
}

type Answer = Result<Response, KserveError>;

fn invalid(message: impl Into<String>) -> KserveError {
    KserveError(EngineError::InvalidInput(message.into()).into())
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({"name": "ferroserve", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}))
}

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.engine.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

/// Only version 1 exists (one version per model).
fn check_version(version: Option<&str>, model: &str) -> Result<(), KserveError> {
    match version {
        None | Some("1") | Some("") => Ok(()),
        Some(v) => Err(KserveError(
            EngineError::ModelNotFound(format!("{model} version {v} (only version 1 is served)")).into(),
        )),
    }
}

fn datatype(t: Option<ElementType>) -> &'static str {
    match t {
        Some(ElementType::F32) => "FP32",
        Some(ElementType::F64) => "FP64",
        Some(ElementType::I32) => "INT32",
        Some(ElementType::I64) => "INT64",
        Some(ElementType::U8) => "UINT8",
        Some(ElementType::Bool) => "BOOL",
        None => "UNSUPPORTED",
    }
}

fn spec_json(s: &TensorSpec) -> Value {
    json!({"name": s.name, "datatype": datatype(s.element_type), "shape": s.shape})
}

async fn metadata(state: &AppState, model: &str) -> Answer {
    let summary = state
        .engine
        .list_models()
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| KserveError(EngineError::ModelNotFound(model.to_string()).into()))?;
    let (platform, inputs, outputs) = match summary.task {
        Task::Tensor => {
            let (inputs, outputs) = state.engine.tensor_specs(model)?;
            ("onnxruntime_onnx", inputs.iter().map(spec_json).collect(), outputs.iter().map(spec_json).collect())
        }
        Task::Embedding => {
            let dims = summary.dimensions.map_or(-1, |d| d as i64);
            (
                "ferroserve_embedding",
                vec![json!({"name": "text", "datatype": "BYTES", "shape": [-1]})],
                vec![json!({"name": "embedding", "datatype": "FP32", "shape": [-1, dims]})],
            )
        }
        Task::Generation => (
            "ferroserve_generation",
            vec![json!({"name": "text_input", "datatype": "BYTES", "shape": [1]})],
            vec![json!({"name": "text_output", "datatype": "BYTES", "shape": [1]})],
        ),
    };
    let body = json!({"name": model, "versions": ["1"], "platform": platform, "inputs": inputs, "outputs": outputs});
    Ok(Json(body).into_response())
}

pub async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    metadata(&state, &model).await
}

pub async fn version_metadata(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    check_version(Some(&version), &model)?;
    metadata(&state, &model).await
}

async fn model_ready_status(state: &AppState, model: &str) -> StatusCode {
    match state.engine.list_models().into_iter().find(|m| m.name == model) {
        Some(m) if m.ready => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::NOT_FOUND,
    }
}

pub async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> StatusCode {
    model_ready_status(&state, &model).await
}

pub async fn version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> StatusCode {
    if check_version(Some(&version), &model).is_err() {
        return StatusCode::NOT_FOUND;
    }
    model_ready_status(&state, &model).await
}

/// A decoded input or output: a tensor, or BYTES elements.
enum Tensor {
    Typed(NamedTensor),
    Bytes { name: String, shape: Vec<i64>, items: Vec<Vec<u8>> },
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

fn element_count(shape: &[i64], at: &str) -> Result<usize, KserveError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)))
        .ok_or_else(|| invalid(format!("{at}: shape {shape:?} is not valid")))
}

/// Typed data from JSON values.
fn from_json(values: &[Value], datatype: &str, at: &str) -> Result<TensorData, KserveError> {
    let bad = |v: &Value| invalid(format!("{at}: {v} is not {datatype}"));
    macro_rules! collect {
        ($variant:ident, $f:expr) => {
            values.iter().map(|v| $f(v).ok_or_else(|| bad(v))).collect::<Result<Vec<_>, _>>().map(TensorData::$variant)
        };
    }
    match datatype {
        "FP32" | "FP16" => collect!(F32, |v: &Value| v.as_f64().map(|x| x as f32)),
        "FP64" => collect!(F64, |v: &Value| v.as_f64()),
        "INT32" | "INT16" | "INT8" => collect!(I32, |v: &Value| v.as_i64().and_then(|x| i32::try_from(x).ok())),
        "INT64" => collect!(I64, |v: &Value| v.as_i64()),
        "UINT8" => collect!(U8, |v: &Value| v.as_u64().and_then(|x| u8::try_from(x).ok())),
        "BOOL" => collect!(Bool, |v: &Value| v.as_bool()),
        other => Err(invalid(format!("{at}: datatype {other} is not supported here"))),
    }
}

/// Typed data from the binary extension's little-endian bytes.
fn from_raw(raw: &[u8], datatype: &str, at: &str) -> Result<TensorData, KserveError> {
    fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
    }
    let width = match datatype {
        "FP32" | "INT32" => 4,
        "FP64" | "INT64" => 8,
        "UINT8" | "BOOL" => 1,
        other => return Err(invalid(format!("{at}: binary datatype {other} is not supported here"))),
    };
    if !raw.len().is_multiple_of(width) {
        return Err(invalid(format!("{at}: {} bytes is not a whole number of {datatype} values", raw.len())));
    }
    Ok(match datatype {
        "FP32" => TensorData::F32(chunks(raw, f32::from_le_bytes)),
        "INT32" => TensorData::I32(chunks(raw, i32::from_le_bytes)),
        "FP64" => TensorData::F64(chunks(raw, f64::from_le_bytes)),
        "INT64" => TensorData::I64(chunks(raw, i64::from_le_bytes)),
        "UINT8" => TensorData::U8(raw.to_vec()),
        _ => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
    })
}

/// BYTES elements from the binary extension: each a 4-byte little-endian length, then the bytes.
fn bytes_from_raw(mut raw: &[u8], at: &str) -> Result<Vec<Vec<u8>>, KserveError> {
    let mut items = Vec::new();
    while !raw.is_empty() {
        let (len, rest) = raw.split_at_checked(4).ok_or_else(|| invalid(format!("{at}: a BYTES length is cut")))?;
        let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
        let (item, rest) =
            rest.split_at_checked(len).ok_or_else(|| invalid(format!("{at}: a BYTES element is cut")))?;
        items.push(item.to_vec());
        raw = rest;
    }
    Ok(items)
}

/// The request's inputs, in order.
fn decode_inputs(header: &Value, mut binary: &[u8]) -> Result<Vec<Tensor>, KserveError> {
    let Some(Value::Array(inputs)) = header.get("inputs") else { return Err(invalid("inputs must be a list")) };
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let at = format!("inputs[{i}]");
        let name = input.get("name").and_then(Value::as_str).ok_or_else(|| invalid(format!("{at}.name is missing")))?;
        let at = format!("input {name:?}");
        let datatype = input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}: datatype is missing")))?;
        let shape: Vec<i64> = input
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_i64).collect())
            .ok_or_else(|| invalid(format!("{at}: shape must be a list of integers")))?;
        let count = element_count(&shape, &at)?;
        let binary_size = input.pointer("/parameters/binary_data_size").and_then(Value::as_u64);
        let tensor = match binary_size {
            Some(size) => {
                let (raw, rest) = binary
                    .split_at_checked(size as usize)
                    .ok_or_else(|| invalid(format!("{at}: binary_data_size {size} is past the end of the body")))?;
                binary = rest;
                if datatype == "BYTES" {
                    Tensor::Bytes { name: name.into(), shape, items: bytes_from_raw(raw, &at)? }
                } else {
                    Tensor::Typed(NamedTensor { name: name.into(), shape, data: from_raw(raw, datatype, &at)? })
                }
            }
            None => {
                let mut values = Vec::new();
                flatten(input.get("data").unwrap_or(&Value::Null), &mut values);
                if datatype == "BYTES" {
                    let items = values
                        .iter()
                        .map(|v| v.as_str().map(|s| s.as_bytes().to_vec()))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| invalid(format!("{at}: BYTES data must be strings")))?;
                    Tensor::Bytes { name: name.into(), shape, items }
                } else {
                    Tensor::Typed(NamedTensor { name: name.into(), shape, data: from_json(&values, datatype, &at)? })
                }
            }
        };
        let len = match &tensor {
            Tensor::Typed(t) => t.data.len(),
            Tensor::Bytes { items, .. } => items.len(),
        };
        if len != count {
            return Err(invalid(format!(
                "{at}: shape {:?} holds {count} values, the data has {len}",
                shape_of(&tensor)
            )));
        }
        out.push(tensor);
    }
    Ok(out)
}

fn shape_of(t: &Tensor) -> &[i64] {
    match t {
        Tensor::Typed(t) => &t.shape,
        Tensor::Bytes { shape, .. } => shape,
    }
}

fn name_of(t: &Tensor) -> &str {
    match t {
        Tensor::Typed(t) => &t.name,
        Tensor::Bytes { name, .. } => name,
    }
}

/// The one BYTES input a text model takes.
fn texts(inputs: Vec<Tensor>, expected: &str) -> Result<Vec<String>, KserveError> {
    let mut inputs = inputs.into_iter();
    match (inputs.next(), inputs.next()) {
        (Some(Tensor::Bytes { name, items, .. }), None) if name == expected => items
            .into_iter()
            .map(|b| String::from_utf8(b).map_err(|_| invalid(format!("input {expected:?}: an element is not UTF-8"))))
            .collect(),
        _ => Err(invalid(format!("this model takes one BYTES input named {expected:?}"))),
    }
}

/// Runs the model on the decoded inputs.
async fn run(state: &AppState, model: &str, header: &Value, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, KserveError> {
    let task = state
        .engine
        .list_models()
        .into_iter()
        .find(|m| m.name == model)
        .map(|m| m.task)
        .ok_or_else(|| KserveError(EngineError::ModelNotFound(model.to_string()).into()))?;
    let param = |k: &str| header.pointer(&format!("/parameters/{k}"));
    match task {
        Task::Tensor => {
            let typed = inputs
                .into_iter()
                .map(|t| match t {
                    Tensor::Typed(t) => Ok(t),
                    Tensor::Bytes { name, .. } => Err(invalid(format!("input {name:?}: this model takes no BYTES"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let wanted: Vec<String> = requested(header).into_iter().map(|(name, _)| name).collect();
            Ok(state.engine.infer(model, typed, &wanted).await?.into_iter().map(Tensor::Typed).collect())
        }
        Task::Embedding => {
            let texts = texts(inputs, "text")?;
            let n = texts.len();
            let out = state.engine.embed(EmbedRequest::with_defaults(model.to_string(), texts)).await?;
            let dims = out.vectors.first().map_or(0, Vec::len);
            let data = TensorData::F32(out.vectors.into_iter().flatten().collect());
            Ok(vec![Tensor::Typed(NamedTensor { name: "embedding".into(), shape: vec![n as i64, dims as i64], data })])
        }
        Task::Generation => {
            let mut prompts = texts(inputs, "text_input")?;
            if prompts.len() != 1 {
                return Err(invalid("input \"text_input\" takes one prompt"));
            }
            let request = GenerateRequest {
                model: model.to_string(),
                prompt: Prompt::Text(prompts.remove(0)),
                params: ferroserve_models::llm::SamplingParams {
                    temperature: param("temperature").and_then(Value::as_f64).unwrap_or(0.0) as f32,
                    ..Default::default()
                },
                max_tokens: param("max_tokens").and_then(Value::as_u64).map(|n| n as usize),
                stop: Vec::new(),
                ignore_eos: false,
                priority: None,
                timeout: None,
                cache: CacheMode::Default,
            };
            let mut stream = state.engine.generate(request).await?;
            let mut text = String::new();
            while let Some(event) = stream.events.recv().await {
                match event {
                    GenerationEvent::Token { text: piece, .. } => text.push_str(&piece),
                    GenerationEvent::Done { text: rest, .. } => {
                        text.push_str(&rest);
                        break;
                    }
                    GenerationEvent::Failed(e) => return Err(EngineError::from(e).into()),
                }
            }
            Ok(vec![Tensor::Bytes { name: "text_output".into(), shape: vec![1], items: vec![text.into_bytes()] }])
        }
    }
}

/// Requested outputs and whether each goes in binary.
fn requested(header: &Value) -> Vec<(String, bool)> {
    let default_binary = header.pointer("/parameters/binary_data_output").and_then(Value::as_bool).unwrap_or(false);
    header
        .get("outputs")
        .and_then(Value::as_array)
        .map(|outs| {
            outs.iter()
                .filter_map(|o| {
                    let binary =
                        o.pointer("/parameters/binary_data").and_then(Value::as_bool).unwrap_or(default_binary);
                    Some((o.get("name")?.as_str()?.to_string(), binary))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn typed_json(data: TensorData) -> Value {
    match data {
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::Bool(v) => json!(v),
    }
}

fn typed_raw(data: &TensorData) -> Vec<u8> {
    match data {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
    }
}

fn respond(model: &str, header: &Value, outputs: Vec<Tensor>) -> Response {
    let requested = requested(header);
    let default_binary = header.pointer("/parameters/binary_data_output").and_then(Value::as_bool).unwrap_or(false);
    let mut binary = Vec::new();
    let mut described = Vec::with_capacity(outputs.len());
    for t in outputs {
        let as_binary = requested.iter().find(|(n, _)| n == name_of(&t)).map_or(default_binary, |(_, b)| *b);
        let (name, shape, datatype, raw, data) = match t {
            Tensor::Typed(t) => {
                let datatype = datatype(Some(t.data.element_type()));
                let (raw, data) =
                    if as_binary { (Some(typed_raw(&t.data)), Value::Null) } else { (None, typed_json(t.data)) };
                (t.name, t.shape, datatype, raw, data)
            }
            Tensor::Bytes { name, shape, items } => {
                let raw = as_binary.then(|| {
                    items
                        .iter()
                        .flat_map(|i| (i.len() as u32).to_le_bytes().into_iter().chain(i.iter().copied()))
                        .collect()
                });
                let data = json!(items.iter().map(|i| String::from_utf8_lossy(i).into_owned()).collect::<Vec<_>>());
                (name, shape, "BYTES", raw, data)
            }
        };
        let mut out = json!({"name": name, "datatype": datatype, "shape": shape});
        match raw {
            Some(raw) => {
                out["parameters"] = json!({"binary_data_size": raw.len()});
                binary.extend_from_slice(&raw);
            }
            None => out["data"] = data,
        }
        described.push(out);
    }
    let mut body = json!({"model_name": model, "model_version": "1", "outputs": described});
    if let Some(id) = header.get("id") {
        body["id"] = id.clone();
    }
    if binary.is_empty() {
        return Json(body).into_response();
    }
    let mut bytes = body.to_string().into_bytes();
    let json_len = bytes.len();
    bytes.extend_from_slice(&binary);
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(HEADER_LENGTH, HeaderValue::from(json_len));
    response
}

async fn infer_body(state: &AppState, model: &str, headers: &HeaderMap, body: &Bytes) -> Answer {
    let json_len = match headers.get(HEADER_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n <= body.len())
            .ok_or_else(|| invalid(format!("{HEADER_LENGTH} is not a length within the body")))?,
        None => body.len(),
    };
    let (json_part, binary) = body.split_at(json_len);
    let header: Value =
        serde_json::from_slice(json_part).map_err(|e| invalid(format!("the request is not JSON: {e}")))?;
    let inputs = decode_inputs(&header, binary)?;
    let outputs = run(state, model, &header, inputs).await?;
    Ok(respond(model, &header, outputs))
}

pub async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    infer_body(&state, &model, &headers, &body).await
}

pub async fn version_infer(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    check_version(Some(&version), &model)?;
    infer_body(&state, &model, &headers, &body).await
}
