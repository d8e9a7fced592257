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
use ferroserve_models::onnx::TensorData;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::schemas::{
    Empty, InferRequest, InferResponse, KserveErrorBody, ModelConfig, ModelMetadata, ModelStatistics, RepositoryEntry,
    RepositoryIndexRequest, ServerMetadata,
};
use crate::api::tensor_wire;
use crate::engine::{EngineError, InferData, InferParams, InferTensor};

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

/// The server's name, version and protocol extensions.
#[utoipa::path(get, path = "/v2", tag = "KServe v2", responses((status = 200, description = "Server metadata", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<Value> {
    Json(
        json!({"name": "ferroserve", "version": env!("CARGO_PKG_VERSION"), "extensions": crate::api::KSERVE_EXTENSIONS}),
    )
}

/// 200 while the process answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "KServe v2", responses((status = 200, description = "Live")))]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// 200 when every model is loaded, 503 before.
#[utoipa::path(get, path = "/v2/health/ready", tag = "KServe v2",
    responses((status = 200, description = "Ready"), (status = 503, description = "Models are still loading")))]
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.engine.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

async fn metadata(state: &AppState, model: &str, key: &str) -> Answer {
    let sig = state.engine.signature(key)?;
    let tensors = |list: Vec<(String, &str, Vec<i64>)>| -> Vec<Value> {
        list.into_iter()
            .map(|(name, datatype, shape)| json!({"name": name, "datatype": datatype, "shape": shape}))
            .collect()
    };
    let body = json!({"name": model, "versions": state.engine.versions_of(model), "platform": sig.platform,
                      "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)});
    Ok(Json(body).into_response())
}

/// A model's platform, versions and tensors.
#[utoipa::path(get, path = "/v2/models/{model}", tag = "KServe v2", params(("model" = String, Path, description = "The model")),
    responses((status = 200, description = "Model metadata", body = ModelMetadata),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    metadata(&state, &model, &model).await
}

/// Metadata of one version of a model.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "KServe v2", params(("model" = String, Path, description = "The model"), ("version" = String, Path, description = "A version of the model (a folder of its repository entry)")),
    responses((status = 200, description = "Model metadata", body = ModelMetadata),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn version_metadata(State(state): State<AppState>, Path((model, version)): Path<(String, String)>) -> Answer {
    let key = state.engine.versioned(&model, &version)?;
    metadata(&state, &model, &key).await
}

fn ready_status(state: &AppState, key: &str) -> StatusCode {
    match state.engine.model_ready(key) {
        Some(true) => StatusCode::OK,
        Some(false) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::NOT_FOUND,
    }
}

/// 200 when the model can serve (no body).
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "KServe v2", params(("model" = String, Path, description = "The model")),
    responses((status = 200, description = "Ready"), (status = 404, description = "No such model"),
              (status = 503, description = "Loading, or unloaded")))]
pub async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> StatusCode {
    ready_status(&state, &model)
}

/// 200 when this version can serve.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "KServe v2", params(("model" = String, Path, description = "The model"), ("version" = String, Path, description = "A version of the model (a folder of its repository entry)")),
    responses((status = 200, description = "Ready"), (status = "4XX", description = "No such model or version"),
              (status = 503, description = "Loading, or unloaded")))]
pub async fn version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> StatusCode {
    match state.engine.versioned(&model, &version) {
        Ok(key) => ready_status(&state, &key),
        Err(_) => StatusCode::NOT_FOUND,
    }
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// Typed data from JSON values.
fn from_json(values: &[Value], datatype: &str, at: &str) -> Result<TensorData, KserveError> {
    let t = crate::engine::element_type(datatype)
        .ok_or_else(|| invalid(format!("{at}: datatype {datatype} is not supported")))?;
    TensorData::from_json(t, values).map_err(|v| invalid(format!("{at}: {v} is not {datatype}")))
}

/// The request's inputs, in order.
fn decode_inputs(header: &Value, mut binary: &[u8]) -> Result<Vec<InferTensor>, KserveError> {
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
        let data = match input.pointer("/parameters/binary_data_size").and_then(Value::as_u64) {
            Some(size) => {
                let (raw, rest) = binary
                    .split_at_checked(size as usize)
                    .ok_or_else(|| invalid(format!("{at}: binary_data_size {size} is past the end of the body")))?;
                binary = rest;
                tensor_wire::decode(raw, datatype).map_err(|e| invalid(format!("{at}: {e}")))?
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
                    InferData::Bytes(items)
                } else {
                    InferData::Typed(from_json(&values, datatype, &at)?)
                }
            }
        };
        out.push(InferTensor { name: name.to_string(), shape, data });
    }
    Ok(out)
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

fn respond(model: &str, header: &Value, outputs: Vec<InferTensor>) -> Response {
    let requested = requested(header);
    let default_binary = header.pointer("/parameters/binary_data_output").and_then(Value::as_bool).unwrap_or(false);
    let mut binary = Vec::new();
    let mut described = Vec::with_capacity(outputs.len());
    for t in outputs {
        let as_binary = requested.iter().find(|(n, _)| *n == t.name).map_or(default_binary, |(_, b)| *b);
        let mut out = json!({"name": t.name, "datatype": t.data.datatype(), "shape": t.shape});
        if as_binary {
            let raw = tensor_wire::encode(&t.data);
            out["parameters"] = json!({"binary_data_size": raw.len()});
            binary.extend_from_slice(&raw);
        } else {
            out["data"] = match t.data {
                InferData::Typed(data) => data.to_json(),
                InferData::Bytes(items) => {
                    json!(items.iter().map(|i| String::from_utf8_lossy(i).into_owned()).collect::<Vec<_>>())
                }
            };
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
    let wanted: Vec<String> = requested(&header).into_iter().map(|(name, _)| name).collect();
    let param = |k: &str| header.pointer(&format!("/parameters/{k}"));
    let params = InferParams {
        max_tokens: param("max_tokens").and_then(Value::as_u64).map(|n| n as usize),
        temperature: param("temperature").and_then(Value::as_f64).map(|t| t as f32),
        ..Default::default()
    }
    .triton_scheduling(param("priority").and_then(Value::as_u64), param("timeout").and_then(Value::as_u64))?;
    let outputs = state.engine.infer(model, inputs, &wanted, params).await?;
    Ok(respond(model, &header, outputs))
}

/// Runs the model on named tensors (for embedding models, BYTES `text` in; for generation models, BYTES
/// `text_input` in and `text_output` out).
#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "KServe v2", params(("model" = String, Path, description = "The model")), request_body(description = "JSON tensors, or with Triton's binary extension the JSON header followed by raw tensors (`Inference-Header-Content-Length` says where the JSON ends)",
        content((InferRequest = "application/json"), (Vec<u8> = "application/octet-stream"))),
    params(("Inference-Header-Content-Length" = Option<u64>, Header, description = "Bytes of JSON before the binary tensors")),
    responses((status = 200, description = "The outputs; with binary outputs, the JSON header then raw tensors",
               content((InferResponse = "application/json"), (Vec<u8> = "application/octet-stream"))),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    infer_body(&state, &model, &headers, &body).await
}

/// Runs one version of the model.
#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "KServe v2", params(("model" = String, Path, description = "The model"), ("version" = String, Path, description = "A version of the model (a folder of its repository entry)")), request_body(description = "JSON tensors, or with Triton's binary extension the JSON header followed by raw tensors (`Inference-Header-Content-Length` says where the JSON ends)",
        content((InferRequest = "application/json"), (Vec<u8> = "application/octet-stream"))),
    params(("Inference-Header-Content-Length" = Option<u64>, Header, description = "Bytes of JSON before the binary tensors")),
    responses((status = 200, description = "The outputs; with binary outputs, the JSON header then raw tensors",
               content((InferResponse = "application/json"), (Vec<u8> = "application/octet-stream"))),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn version_infer(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let key = state.engine.versioned(&model, &version)?;
    infer_body(&state, &key, &headers, &body).await
}

/// `POST /v2/repository/index` (`{"ready": true}` lists only ready models).
#[utoipa::path(post, path = "/v2/repository/index", tag = "Model repository",
    request_body(content = Option<RepositoryIndexRequest>, description = "`{\"ready\": true}` lists only ready models; any other body lists all"),
    responses((status = 200, description = "Every model of the repository and its state", body = Vec<RepositoryEntry>)))]
pub async fn repository_index(State(state): State<AppState>, body: Bytes) -> Answer {
    let ready_only =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("ready")?.as_bool()).unwrap_or(false);
    let models: Vec<Value> = state
        .engine
        .repository_index()
        .into_iter()
        .filter(|m| !ready_only || m.state == "READY")
        .map(|m| json!({"name": m.name, "version": "1", "state": m.state, "reason": m.reason}))
        .collect();
    Ok(Json(Value::Array(models)).into_response())
}

/// Loads (or reloads) a model of the repository; the old version serves until the new one is ready.
#[utoipa::path(post, path = "/v2/repository/models/{model}/load", tag = "Model repository", params(("model" = String, Path, description = "The model")),
    responses((status = 200, description = "Loaded", body = Empty),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn load(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    state.engine.load_model(&model).await?;
    Ok(Json(json!({})).into_response())
}

/// Unloads a model after its in-flight requests finish.
#[utoipa::path(post, path = "/v2/repository/models/{model}/unload", tag = "Model repository", params(("model" = String, Path, description = "The model")),
    responses((status = 200, description = "Unloading", body = Empty),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn unload(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    state.engine.unload_model(&model)?;
    Ok(Json(json!({})).into_response())
}

fn stats_json(stats: Vec<(String, crate::engine::InferStats)>) -> Value {
    let duration = |(count, ns): (u64, u64)| json!({"count": count, "ns": ns});
    let models: Vec<Value> = stats
        .into_iter()
        .map(|(name, s)| {
            json!({
                "name": name, "version": "1", "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count, "execution_count": s.execution_count,
                "inference_stats": {
                    "success": duration(s.success), "fail": duration(s.fail), "queue": duration(s.queue),
                    "compute_input": duration((0, 0)), "compute_infer": duration(s.compute),
                    "compute_output": duration((0, 0)), "cache_hit": duration((0, 0)), "cache_miss": duration((0, 0)),
                },
                "batch_stats": [],
            })
        })
        .collect();
    json!({"model_stats": models})
}

/// `GET /v2/models/stats`: every model's inference statistics.
#[utoipa::path(get, path = "/v2/models/stats", tag = "KServe v2",
    responses((status = 200, description = "Counts and cumulative times, as Triton reports them", body = ModelStatistics),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn all_stats(State(state): State<AppState>) -> Answer {
    Ok(Json(stats_json(state.engine.inference_statistics(None)?)).into_response())
}

/// One model's inference statistics.
#[utoipa::path(get, path = "/v2/models/{model}/stats", tag = "KServe v2", params(("model" = String, Path, description = "The model")),
    responses((status = 200, description = "Counts and cumulative times, as Triton reports them", body = ModelStatistics),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn model_stats(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    Ok(Json(stats_json(state.engine.inference_statistics(Some(&model))?)).into_response())
}

/// `GET /v2/models/{name}/config`: Triton's model configuration (name, platform, max_batch_size, inputs and
/// outputs with `TYPE_*` data types).
#[utoipa::path(get, path = "/v2/models/{model}/config", tag = "KServe v2", params(("model" = String, Path, description = "The model")),
    responses((status = 200, description = "Triton's model configuration", body = ModelConfig),
              (status = "4XX", description = "No such model, or a request it refuses", body = KserveErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = KserveErrorBody)))]
pub async fn model_config(State(state): State<AppState>, Path(model): Path<String>) -> Answer {
    let sig = state.engine.signature(&model)?;
    let tensors = |list: &[(String, &str, Vec<i64>)]| -> Vec<Value> {
        list.iter()
            .map(|(name, datatype, shape)| {
                json!({"name": name, "data_type": crate::engine::triton_type(datatype), "dims": sig.triton_dims(shape)})
            })
            .collect()
    };
    let body = json!({"name": model, "platform": sig.platform, "max_batch_size": sig.max_batch_size,
                      "input": tensors(&sig.inputs), "output": tensors(&sig.outputs)});
    Ok(Json(body).into_response())
}
