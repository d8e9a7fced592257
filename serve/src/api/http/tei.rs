//! Text-Embeddings-Inference-compatible route: `POST /embed`, so TEI clients can switch unchanged.
//! TEI serves one model, so `model` is optional here and defaults to the first embedding model.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;

use utoipa::ToSchema;

use super::error::{ApiError, TeiError};
use super::extract::{JsonBody, MetaHeaders};
use super::scheduling::{Scheduling, SchedulingHeaders, route_key};
use super::schemas::TeiErrorBody;
use super::{AppState, labeled};
use crate::api::auth::Principal;
use crate::cache::CacheMode;
use crate::engine::{EmbedRequest, EngineError};

/// One text or a list of texts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

/// TEI's embed request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": ["a cat sat on the mat"]}))]
pub struct EmbedBody {
    #[schema(value_type = super::schemas::TextOrTexts)]
    inputs: Inputs,
    #[serde(default)]
    model: Option<String>,
    #[serde(default = "yes")]
    normalize: bool,
    /// Absent: the model's `truncate` setting.
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    #[schema(minimum = 1)]
    dimensions: Option<usize>,
    /// 0 is served first (also header `x-ferroserve-priority`).
    #[serde(default)]
    priority: Option<u8>,
    /// Give up after this many milliseconds (also header `x-ferroserve-timeout-ms`).
    #[serde(default)]
    #[schema(minimum = 1)]
    timeout_ms: Option<u64>,
    /// default | skip | refresh | only (also header `x-ferroserve-cache`).
    #[serde(default)]
    #[schema(value_type = Option<super::schemas::CacheModeSchema>)]
    cache: Option<CacheMode>,
}

fn yes() -> bool {
    true
}

/// Embeddings (TEI): a list of vectors, one per input. `model` defaults to the first embedding model.
#[utoipa::path(post, path = "/embed", tag = "TEI", request_body = EmbedBody, params(SchedulingHeaders),
    responses((status = 200, description = "One vector per input, in order", body = Vec<Vec<f32>>),
              (status = "4XX", description = "What is wrong with the request (TEI answers 422 for invalid input)", body = TeiErrorBody),
              (status = "5XX", description = "The model failed, or the server is loading or shutting down", body = TeiErrorBody)))]
pub async fn embed(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
    JsonBody(body, _): JsonBody<EmbedBody, TeiError>,
) -> Response {
    let key = route_key(&headers, principal.as_deref());
    let Some(model) = body.model.clone().or_else(|| state.engine.default_embedding_model()) else {
        let e = ApiError::from(EngineError::ModelNotFound("(default embedding model)".into()));
        return labeled(&state.engine, "", Err::<Json<()>, _>(TeiError(e)));
    };
    let scheduling = match Scheduling::from_request(&headers, body.priority, body.timeout_ms, body.cache) {
        Ok(s) => s,
        Err(e) => return labeled(&state.engine, &model, Err::<Json<()>, _>(TeiError(e))),
    };
    let inputs = match body.inputs {
        Inputs::One(s) => vec![s],
        Inputs::Many(v) => v,
    };
    let req = EmbedRequest {
        model: model.clone(),
        inputs,
        normalize: Some(body.normalize),
        truncate: body.truncate.into(),
        dimensions: body.dimensions,
        priority: scheduling.priority,
        timeout: scheduling.timeout,
        cache: scheduling.cache,
    };
    let result = state
        .engine
        .embed_routed(req, key.as_deref())
        .await
        .map(|out| (MetaHeaders(out.meta()), Json(out.vectors)))
        .map_err(TeiError::from);
    labeled(&state.engine, &model, result)
}
