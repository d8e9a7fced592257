//! Text-Embeddings-Inference-compatible route: `POST /embed`, so TEI clients can switch unchanged.
//! TEI serves one model, so `model` is optional here and defaults to the first embedding model.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::error::{ApiError, TeiError};
use super::extract::{JsonBody, MetaHeaders};
use super::scheduling::Scheduling;
use super::{AppState, labeled};
use crate::cache::CacheMode;
use crate::engine::{EmbedRequest, EngineError};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct EmbedBody {
    inputs: Inputs,
    #[serde(default)]
    model: Option<String>,
    #[serde(default = "yes")]
    normalize: bool,
    /// Absent: the model's `truncate` setting.
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<usize>,
    /// 0 is served first (also header `x-ferroserve-priority`).
    #[serde(default)]
    priority: Option<u8>,
    /// Give up after this many milliseconds (also header `x-ferroserve-timeout-ms`).
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// default | skip | refresh | only (also header `x-ferroserve-cache`).
    #[serde(default)]
    cache: Option<CacheMode>,
}

fn yes() -> bool {
    true
}

pub async fn embed(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body, _): JsonBody<EmbedBody, TeiError>,
) -> Response {
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
    let result =
        state.engine.embed(req).await.map(|out| (MetaHeaders(out.meta()), Json(out.vectors))).map_err(TeiError::from);
    labeled(&state.engine, &model, result)
}
