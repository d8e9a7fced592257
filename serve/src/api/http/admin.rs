//! Cache administration: `GET /admin/cache` (usage), `POST /admin/cache/invalidate` (one embedding entry,
//! one model's entries in every cache, or everything). Bind the HTTP listener to a trusted network: these routes have no authentication.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::OpenAiError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    /// Only this model's entries (all models when absent).
    model: Option<String>,
    /// Only this text's entry (needs `model`).
    input: Option<String>,
    /// The `truncate` flag the entry was computed with.
    #[serde(default)]
    truncate: bool,
}

pub async fn usage(State(state): State<AppState>) -> Json<serde_json::Value> {
    let usage = |u: Option<(u64, u64)>| u.map(|(bytes, entries)| json!({"bytes": bytes, "entries": entries}));
    Json(json!({
        "embedding": usage(state.engine.embedding_cache_usage()),
        "response": usage(state.engine.response_cache_usage()),
        "semantic": state.engine.semantic_cache_usage().into_iter()
            .map(|(model, (bytes, entries))| (model, json!({"bytes": bytes, "entries": entries})))
            .collect::<serde_json::Map<_, _>>(),
    }))
}

pub async fn invalidate(
    State(state): State<AppState>,
    body: Result<Json<InvalidateRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    let input = req.input.as_deref().map(|t| (t, req.truncate));
    match state.engine.invalidate(req.model.as_deref(), input).await {
        Ok(done) => {
            let mut body = json!({"invalidated": done.what});
            match done.shared {
                Some(Ok(n)) => body["shared_deleted"] = json!(n),
                Some(Err(e)) => body["shared_error"] = json!(e),
                None => {}
            }
            Json(body).into_response()
        }
        Err(e) => OpenAiError::from(e).into_response(),
    }
}
