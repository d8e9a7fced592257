//! Administration (the `admin` scope): caches (`GET /admin/cache` usage, `POST /admin/cache/invalidate` one
//! embedding entry, one model's entries in every cache, or everything) and A/B routes of model aliases
//! (`GET /admin/routes`, `PUT` and `DELETE /admin/routes/{alias}`).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use utoipa::ToSchema;

use super::AppState;
use super::error::OpenAiError;
use super::extract::JsonBody;
use super::schemas::{
    CacheUsageReport, Invalidated, OpenAiErrorBody, RouteList, RouteRemoved, RouteSchema, RouteShadow, RouteVariant,
};
use crate::routing::{RouteSpec, Shadow, Variant};

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

/// A route's variants and shadow (the alias is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"variants": [{"model": "all-MiniLM-L6-v2:onnx", "weight": 90},
                                       {"model": "all-MiniLM-L6-v2:onnx-int8", "weight": 10}],
                          "shadow": {"model": "all-MiniLM-L6-v2:onnx-fp16", "share": 0.1}}))]
pub struct RouteBody {
    #[schema(value_type = Vec<RouteVariant>, min_items = 1)]
    variants: Vec<Variant>,
    #[serde(default)]
    #[schema(value_type = Option<RouteShadow>)]
    shadow: Option<Shadow>,
}

/// The routes in force.
#[utoipa::path(get, path = "/admin/routes", tag = "Admin",
    responses((status = 200, description = "Every alias with its variants, weights and shadow", body = RouteList),
              (status = "4XX", description = "Missing or insufficient key", body = OpenAiErrorBody)))]
pub async fn list_routes(State(state): State<AppState>) -> Response {
    Json(json!({"routes": state.engine.routes()})).into_response()
}

/// Sets (or replaces) the route of an alias: requests for it go to the variants by weight, sticky per caller
/// (`x-ferroserve-route-key`, else the API key), and `shadow.share` of them also to the shadow candidate.
#[utoipa::path(put, path = "/admin/routes/{alias}", tag = "Admin",
    params(("alias" = String, Path, description = "The name clients ask for")), request_body = RouteBody,
    responses((status = 200, description = "The route now in force", body = RouteSchema),
              (status = "4XX", description = "A variant that is not a model, weights that add up to 0, ...", body = OpenAiErrorBody)))]
pub async fn put_route(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    JsonBody(body, _): JsonBody<RouteBody, OpenAiError>,
) -> Response {
    let spec = RouteSpec { alias, variants: body.variants, shadow: body.shadow };
    match state.engine.set_route(spec.clone()) {
        Ok(()) => Json(spec).into_response(),
        Err(e) => OpenAiError::from(e).into_response(),
    }
}

/// Removes an alias's route.
#[utoipa::path(delete, path = "/admin/routes/{alias}", tag = "Admin",
    params(("alias" = String, Path, description = "The alias")),
    responses((status = 200, description = "Removed", body = RouteRemoved),
              (status = "4XX", description = "No such route", body = OpenAiErrorBody)))]
pub async fn delete_route(State(state): State<AppState>, Path(alias): Path<String>) -> Response {
    match state.engine.delete_route(&alias) {
        Ok(()) => Json(json!({"alias": alias, "status": "removed"})).into_response(),
        Err(e) => OpenAiError::from(e).into_response(),
    }
}
