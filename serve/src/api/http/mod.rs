//! The HTTP (REST) transport: routes, shared state, API keys, body limits, per-route request metrics, and
//! the layers around them (request ids, compression, CORS; `stack.rs`).

mod admin;
mod auth;
mod completions;
mod error;
mod extract;
mod kserve;
mod langserve;
mod listener;
mod openai;
mod qdrant;
mod ratelimit;
mod scheduling;
mod stack;
mod tei;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

pub use listener::serve;
pub use stack::HttpConfig;

use crate::api::auth::Keys;
use crate::api::connections::ConnectionLimits;
use crate::engine::Engine;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub prometheus: Option<PrometheusHandle>,
    pub started_unix: u64,
}

/// The model a response was for, read by the metrics middleware. Only set for models this server has,
/// so client-chosen names never grow the label set.
#[derive(Clone)]
struct ModelLabel(String);

/// Builds the router with every HTTP route and the layers around them. `keys`: the API keys requests must
/// carry (`None`: authentication off).
pub fn router(
    state: AppState,
    keys: Option<Arc<Keys>>,
    config: &HttpConfig,
    limits: &ConnectionLimits,
    max_body_bytes: usize,
) -> Router {
    let auth = auth::AuthState { keys, engine: state.engine.clone(), max_body_bytes };
    let limits_state = ratelimit::LimitState { engine: state.engine.clone() };
    let routes = Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/chat/completions", post(completions::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(openai::list_models))
        .route("/embed", post(tei::embed))
        .route("/admin/cache", get(admin::usage))
        .route("/admin/cache/invalidate", post(admin::invalidate))
        .route("/", get(qdrant::root))
        .route("/collections", get(qdrant::list_collections))
        .route(
            "/collections/{name}",
            put(qdrant::create_collection).get(qdrant::get_collection).delete(qdrant::delete_collection),
        )
        .route("/collections/{name}/exists", get(qdrant::collection_exists))
        .route("/collections/{name}/snapshots", post(qdrant::create_snapshot))
        .route("/collections/{name}/points", put(qdrant::upsert_points).post(qdrant::get_points))
        .route("/collections/{name}/points/delete", post(qdrant::delete_points))
        .route("/collections/{name}/points/payload", post(qdrant::set_payload).put(qdrant::overwrite_payload))
        .route("/collections/{name}/points/scroll", post(qdrant::scroll))
        .route("/collections/{name}/points/count", post(qdrant::count))
        .route("/collections/{name}/points/query", post(qdrant::query))
        .route("/collections/{name}/points/query/batch", post(qdrant::query_batch))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/stats", get(kserve::all_stats))
        .route("/v2/models/{model}", get(kserve::model_metadata))
        .route("/v2/models/{model}/stats", get(kserve::model_stats))
        .route("/v2/models/{model}/config", get(kserve::model_config))
        .route("/v2/models/{model}/ready", get(kserve::model_ready))
        .route("/v2/models/{model}/infer", post(kserve::infer))
        .route("/v2/models/{model}/versions/{version}", get(kserve::version_metadata))
        .route("/v2/models/{model}/versions/{version}/ready", get(kserve::version_ready))
        .route("/v2/models/{model}/versions/{version}/infer", post(kserve::version_infer))
        .route("/v2/repository/index", post(kserve::repository_index))
        .route("/v2/repository/models/{model}/load", post(kserve::load))
        .route("/v2/repository/models/{model}/unload", post(kserve::unload))
        .route("/chains", get(langserve::list))
        .route("/chains/{name}", put(langserve::put_chain).get(langserve::get_chain).delete(langserve::delete_chain))
        .route("/chains/{name}/invoke", post(langserve::invoke))
        .route("/chains/{name}/batch", post(langserve::batch))
        .route("/chains/{name}/stream", post(langserve::stream_run))
        .route("/chains/{name}/input_schema", get(langserve::input_schema))
        .route("/chains/{name}/output_schema", get(langserve::output_schema))
        .route("/chains/{name}/config_schema", get(langserve::config_schema))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(prometheus_metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(limits_state, ratelimit::limit))
        .layer(middleware::from_fn_with_state(auth, auth::authorize))
        .layer(middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state);
    stack::wrap(routes, config, limits, max_body_bytes)
}

/// Turns a handler result into a response labelled with `model` when the model exists.
fn labeled<T: IntoResponse, E: IntoResponse>(engine: &Engine, model: &str, result: Result<T, E>) -> Response {
    let mut response = result.into_response();
    if !model.is_empty() && engine.has_model(model) {
        response.extensions_mut().insert(ModelLabel(model.to_string()));
    }
    response
}

/// Records request count and latency per route, model and status.
async fn track(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    let model = response.extensions().get::<ModelLabel>().map(|m| m.0.clone()).unwrap_or_default();
    let status = response.status();
    let labels = [("route", route), ("model", model)];
    metrics::histogram!("ferroserve_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    let [route, model] = labels;
    metrics::counter!(
        "ferroserve_http_requests_total",
        &[route.clone(), model.clone(), ("status", status.as_u16().to_string())]
    )
    .increment(1);
    if status.is_client_error() || status.is_server_error() {
        metrics::counter!("ferroserve_http_errors_total", &[route, model, ("status", status.as_u16().to_string())])
            .increment(1);
    }
    response
}

/// Liveness: the process answers.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: every model is loaded. 503 with each model's state otherwise.
async fn ready(State(state): State<AppState>) -> Response {
    let models: Vec<_> = state
        .engine
        .list_models()
        .into_iter()
        .map(|m| json!({"name": m.name, "ready": m.ready, "state": m.state, "error": m.error}))
        .collect();
    let status = if state.engine.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ready": status == StatusCode::OK, "models": models}))).into_response()
}

async fn prometheus_metrics(State(state): State<AppState>) -> Response {
    // Gauges of state (cache and collection sizes) are read now, so every scrape sees current values.
    state.engine.cache_usage();
    state.engine.collection_gauges();
    match &state.prometheus {
        Some(handle) => ([("content-type", "text/plain; version=0.0.4")], handle.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed").into_response(),
    }
}

async fn not_found(request: Request) -> Response {
    let message = format!("no route for {} {}", request.method(), request.uri().path());
    (StatusCode::NOT_FOUND, Json(json!({"error": {"message": message, "type": "not_found_error"}}))).into_response()
}
