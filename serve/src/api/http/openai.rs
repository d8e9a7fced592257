//! OpenAI-compatible routes: `POST /v1/embeddings`, `GET /v1/models`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::{ApiError, OpenAiError};
use super::extract::{JsonBody, MetaHeaders};
use super::scheduling::{Scheduling, SchedulingHeaders, route_key};
use super::schemas::{ModelList, OpenAiErrorBody};
use super::{AppState, labeled};
use crate::api::auth::Principal;
use crate::cache::CacheMode;
use crate::engine::{EmbedOutput, EmbedRequest, EngineError, Truncate};

/// OpenAI's embeddings request, with ferroserve's scheduling and truncation extensions.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "all-MiniLM-L6-v2", "input": ["a cat sat on the mat", "the weather today"]}))]
pub struct EmbeddingsRequest {
    model: String,
    /// A text or a list of texts (token-id arrays are refused).
    #[schema(value_type = super::schemas::TextOrTexts)]
    input: Value,
    #[serde(default)]
    encoding_format: EncodingFormat,
    /// Fewer dimensions (Matryoshka models), at most the model's.
    #[schema(minimum = 1)]
    dimensions: Option<usize>,
    /// Accepted for compatibility; not used.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// ferroserve extension: 0 is served first (also header `x-ferroserve-priority`).
    priority: Option<u8>,
    /// ferroserve extension: give up after this many milliseconds (also `x-ferroserve-timeout-ms`).
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
    /// ferroserve extension: default | skip | refresh | only (also header `x-ferroserve-cache`).
    #[schema(value_type = Option<super::schemas::CacheModeSchema>)]
    cache: Option<CacheMode>,
    /// Extension (TEI): cut inputs longer than the model takes instead of refusing them; absent: the model's
    /// `truncate` setting.
    truncate: Option<bool>,
    /// Extension (vLLM): -1 cuts inputs at the model's limit (a number at least that limit does the same).
    #[schema(minimum = -1)]
    truncate_prompt_tokens: Option<i64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: Usage,
}

#[derive(Serialize, ToSchema)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    #[schema(value_type = super::schemas::FloatsOrBase64)]
    embedding: Embedding,
}

/// Floats (serialized as f32s, in their shortest form), or a base64 string of little-endian f32 with
/// `encoding_format: base64`.
#[derive(Serialize)]
#[serde(untagged)]
enum Embedding {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize, ToSchema)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// Turns OpenAI's `input` (a string or an array of strings) into texts.
fn texts(input: Value) -> Result<Vec<String>, ApiError> {
    let invalid = |m: &str| ApiError::from(EngineError::InvalidInput(m.into()));
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

/// Embeddings of one or more texts (OpenAI).
#[utoipa::path(post, path = "/v1/embeddings", tag = "OpenAI", request_body = EmbeddingsRequest,
    params(SchedulingHeaders),
    responses((status = 200, description = "One vector per input, in order", body = EmbeddingsResponse,
               headers(("x-cache" = String, description = "HIT, MISS or PARTIAL"))),
              (status = "4XX", description = "What is wrong with the request", body = OpenAiErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = OpenAiErrorBody)))]
pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    JsonBody(req, _): JsonBody<EmbeddingsRequest, OpenAiError>,
) -> Response {
    let model = req.model.clone();
    let key = route_key(&headers, principal.as_deref());
    let result = embed(&state, &headers, req, key.as_deref()).await;
    labeled(&state.engine, &model, result)
}

/// The truncation an embeddings request asks for: `truncate_prompt_tokens` (vLLM), else `truncate`.
fn truncation(truncate: Option<bool>, truncate_prompt_tokens: Option<i64>) -> Result<Truncate, ApiError> {
    Ok(match (truncate_prompt_tokens, truncate) {
        (Some(-1), _) => Truncate::ToLimit,
        (Some(n), _) if n >= 1 => Truncate::AtMost(n as usize),
        (Some(n), _) => {
            let m = format!("truncate_prompt_tokens must be -1 (the model's limit) or a positive number, got {n}");
            return Err(EngineError::InvalidInput(m).into());
        }
        (None, flag) => flag.into(),
    })
}

async fn embed(
    state: &AppState,
    headers: &HeaderMap,
    req: EmbeddingsRequest,
    route_key: Option<&str>,
) -> Result<(MetaHeaders, Json<EmbeddingsResponse>), OpenAiError> {
    let scheduling = Scheduling::from_request(headers, req.priority, req.timeout_ms, req.cache)?;
    let truncate = truncation(req.truncate, req.truncate_prompt_tokens)?;
    let inputs = texts(req.input)?;
    let out = state
        .engine
        .embed_routed(
            EmbedRequest {
                model: req.model,
                inputs,
                normalize: None,
                truncate,
                dimensions: req.dimensions,
                priority: scheduling.priority,
                timeout: scheduling.timeout,
                cache: scheduling.cache,
            },
            route_key,
        )
        .await?;
    Ok((MetaHeaders(out.meta()), Json(to_response(out, req.encoding_format))))
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
fn encode(v: Vec<f32>, format: EncodingFormat) -> Embedding {
    match format {
        EncodingFormat::Float => Embedding::Floats(v),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// The ready models and the routed aliases the caller's key may use.
#[utoipa::path(get, path = "/v1/models", tag = "OpenAI",
    responses((status = 200, description = "The models", body = ModelList)))]
pub async fn list_models(State(state): State<AppState>, principal: Option<Extension<Principal>>) -> Json<Value> {
    let data: Vec<Value> = state
        .engine
        .list_models()
        .into_iter()
        .filter(|m| m.ready)
        .map(|m| m.name)
        .chain(state.engine.routes().into_iter().map(|r| r.alias))
        .filter(|name| principal.as_ref().is_none_or(|p| p.may_use(name)))
        .map(|id| json!({"id": id, "object": "model", "created": state.started_unix, "owned_by": "ferroserve"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let Embedding::Base64(s) = encode(vec![1.0, -2.5], EncodingFormat::Base64) else { panic!() };
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        let back: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(back, vec![1.0, -2.5]);
    }

    #[test]
    fn floats_are_written_as_f32s() {
        let floats = serde_json::to_string(&encode(vec![0.1, -0.034477245, 1.0], EncodingFormat::Float)).unwrap();
        assert_eq!(floats, "[0.1,-0.034477245,1.0]", "not with an f64's digits (0.10000000149011612)");
        let base64 = serde_json::to_string(&encode(vec![1.0], EncodingFormat::Base64)).unwrap();
        assert_eq!(base64, "\"AACAPw==\"");
    }

    #[test]
    fn truncation_fields() {
        assert_eq!(truncation(None, None).unwrap(), Truncate::ModelDefault);
        assert_eq!(truncation(Some(false), None).unwrap(), Truncate::Refuse);
        assert_eq!(truncation(Some(true), None).unwrap(), Truncate::ToLimit);
        assert_eq!(truncation(Some(false), Some(-1)).unwrap(), Truncate::ToLimit, "vLLM's field wins");
        assert_eq!(truncation(None, Some(300)).unwrap(), Truncate::AtMost(300));
        assert!(truncation(None, Some(0)).unwrap_err().message.contains("-1"));
    }

    #[test]
    fn input_shapes() {
        assert_eq!(texts(json!("a")).unwrap(), vec!["a"]);
        assert_eq!(texts(json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        assert!(texts(json!([1, 2])).unwrap_err().message.contains("token-id"));
        assert!(texts(json!({"x": 1})).is_err());
    }
}
