//! OpenAI-compatible routes: `POST /v1/embeddings`, `GET /v1/models`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{ApiError, OpenAiError};
use super::scheduling::{Scheduling, Timed, timing_headers};
use super::{AppState, labeled};
use crate::cache::CacheMode;
use crate::engine::{EmbedOutput, EmbedRequest};

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: EncodingFormat,
    dimensions: Option<usize>,
    /// Accepted for compatibility; not used.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// ferroserve extension: 0 is served first (also header `x-ferroserve-priority`).
    priority: Option<u8>,
    /// ferroserve extension: give up after this many milliseconds (also `x-ferroserve-timeout-ms`).
    timeout_ms: Option<u64>,
    /// ferroserve extension: default | skip | refresh | only (also header `x-ferroserve-cache`).
    cache: Option<CacheMode>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize)]
struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: Value,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// Turns OpenAI's `input` (a string or an array of strings) into texts.
fn texts(input: Value) -> Result<Vec<String>, ApiError> {
    let invalid = |m: &str| ApiError::from(crate::engine::EngineError::InvalidInput(m.into()));
    match input {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                Value::Number(_) | Value::Array(_) => Err(invalid(
                    "input: token-id arrays are not accepted, send text (LangChain: set check_embedding_ctx_length=False)",
                )),
                _ => Err(invalid("input: every item must be a string")),
            })
            .collect(),
        _ => Err(invalid("input must be a string or an array of strings")),
    }
}

pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(req)) => req,
        Err(e) => return labeled(&state.engine, "", Err::<Json<()>, _>(OpenAiError::from(e))),
    };
    let model = req.model.clone();
    let result = embed(&state, &headers, req).await;
    labeled(&state.engine, &model, result)
}

async fn embed(
    state: &AppState,
    headers: &HeaderMap,
    req: EmbeddingsRequest,
) -> Result<Timed<EmbeddingsResponse>, OpenAiError> {
    let scheduling = Scheduling::from_request(headers, req.priority, req.timeout_ms, req.cache)?;
    let inputs = texts(req.input)?;
    let out = state
        .engine
        .embed(EmbedRequest {
            model: req.model,
            inputs,
            normalize: None,
            truncate: false,
            dimensions: req.dimensions,
            priority: scheduling.priority,
            timeout: scheduling.timeout,
            cache: scheduling.cache,
        })
        .await?;
    Ok((timing_headers(&out), Json(to_response(out, req.encoding_format))))
}

fn to_response(out: EmbedOutput, format: EncodingFormat) -> EmbeddingsResponse {
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem { object: "embedding", index, embedding: encode(v, format) })
        .collect();
    EmbeddingsResponse {
        object: "list",
        data,
        model: out.model,
        usage: Usage { prompt_tokens: out.prompt_tokens, total_tokens: out.prompt_tokens },
    }
}

/// A vector as JSON floats, or as base64 of its little-endian f32 bytes (what OpenAI's clients ask for).
fn encode(v: Vec<f32>, format: EncodingFormat) -> Value {
    match format {
        EncodingFormat::Float => json!(v),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .engine
        .list_models()
        .into_iter()
        .filter(|m| m.ready)
        .map(|m| json!({"id": m.name, "object": "model", "created": state.started_unix, "owned_by": "ferroserve"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let Value::String(s) = encode(vec![1.0, -2.5], EncodingFormat::Base64) else { panic!() };
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        let back: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(back, vec![1.0, -2.5]);
    }

    #[test]
    fn input_shapes() {
        assert_eq!(texts(json!("a")).unwrap(), vec!["a"]);
        assert_eq!(texts(json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        assert!(texts(json!([1, 2])).unwrap_err().message.contains("token-id"));
        assert!(texts(json!({"x": 1})).is_err());
    }
}
