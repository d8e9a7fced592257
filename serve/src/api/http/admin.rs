//! Cache administration: `GET /admin/cache` (usage), `POST /admin/cache/invalidate` (one embedding entry,
//! one model's entries in every cache, or everything). Bind the HTTP listener to a trusted network: these routes have no authentication.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use utoipa::ToSchema;

use super::AppState;
use super::error::OpenAiError;
use super::extract::JsonBody;
use super::schemas::{CacheUsageReport, Invalidated, OpenAiErrorBody};

/// What to drop from the caches; an empty object drops everything.
#[derive(Debug, Default, Deserialize, ToSchema)]
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

/// Bytes and entries of each cache.
#[utoipa::path(get, path = "/admin/cache", tag = "Admin",
    responses((status = 200, description = "Cache usage", body = CacheUsageReport),
              (status = "4XX", description = "Missing or insufficient key", body = OpenAiErrorBody)))]
pub async fn usage(State(state): State<AppState>) -> Json<serde_json::Value> {
    let usage = |(bytes, entries): (u64, u64)| json!({"bytes": bytes, "entries": entries});
    let caches = state.engine.cache_usage();
    Json(json!({
        "embedding": caches.embedding.map(usage),
        "response": caches.response.map(usage),
        "semantic": caches.semantic.into_iter().map(|(model, u)| (model, usage(u))).collect::<serde_json::Map<_, _>>(),
    }))
}

/// Drops one embedding entry, one model's entries in every cache, or everything (local and shared).
#[utoipa::path(post, path = "/admin/cache/invalidate", tag = "Admin", request_body = InvalidateRequest,
    responses((status = 200, description = "What was dropped", body = Invalidated),
              (status = "4XX", description = "What is wrong with the request", body = OpenAiErrorBody)))]
pub async fn invalidate(
    State(state): State<AppState>,
    JsonBody(req, _): JsonBody<InvalidateRequest, OpenAiError>,
) -> Response {
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
