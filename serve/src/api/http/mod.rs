//! The HTTP (REST) transport: routes, shared state, API keys, body limits, per-route request metrics, and
//! the layers around them (request ids, compression, CORS; `stack.rs`).

mod admin;
mod auth;
mod completions;
mod console;
mod error;
mod extract;
mod kserve;
mod langserve;
mod listener;
mod openai;
mod openapi;
mod qdrant;
mod ratelimit;
mod scheduling;
mod schemas;
mod stack;
mod tei;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Where the console's bench page reads `ferroserve bench` results (`ui.bench_results`).
    pub bench_results: Option<std::path::PathBuf>,
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
    let (routes, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(openai::embeddings))
        .routes(routes!(completions::chat_completions))
        .routes(routes!(completions::completions))
        .routes(routes!(openai::list_models))
        .routes(routes!(tei::embed))
        .routes(routes!(admin::usage))
        .routes(routes!(admin::invalidate))
        .routes(routes!(admin::list_routes))
        .routes(routes!(admin::put_route, admin::delete_route))
        .routes(routes!(console::models))
        .routes(routes!(console::bench_runs))
        .routes(routes!(console::bench_file))
        .routes(routes!(qdrant::root))
        .routes(routes!(qdrant::list_collections))
        .routes(routes!(qdrant::create_collection, qdrant::get_collection, qdrant::delete_collection))
        .routes(routes!(qdrant::collection_exists))
        .routes(routes!(qdrant::create_snapshot))
        .routes(routes!(qdrant::upsert_points, qdrant::get_points))
        .routes(routes!(qdrant::delete_points))
        .routes(routes!(qdrant::set_payload, qdrant::overwrite_payload))
        .routes(routes!(qdrant::scroll))
        .routes(routes!(qdrant::count))
        .routes(routes!(qdrant::query))
        .routes(routes!(qdrant::query_batch))
        .routes(routes!(kserve::server_metadata))
        .routes(routes!(kserve::live))
        .routes(routes!(kserve::ready))
        .routes(routes!(kserve::all_stats))
        .routes(routes!(kserve::model_metadata))
        .routes(routes!(kserve::model_stats))
        .routes(routes!(kserve::model_config))
        .routes(routes!(kserve::model_ready))
        .routes(routes!(kserve::infer))
        .routes(routes!(kserve::version_metadata))
        .routes(routes!(kserve::version_ready))
        .routes(routes!(kserve::version_infer))
        .routes(routes!(kserve::repository_index))
        .routes(routes!(kserve::load))
        .routes(routes!(kserve::unload))
        .routes(routes!(langserve::list))
        .routes(routes!(langserve::put_chain, langserve::get_chain, langserve::delete_chain))
        .routes(routes!(langserve::invoke))
        .routes(routes!(langserve::batch))
        .routes(routes!(langserve::stream_run))
        .routes(routes!(langserve::stream_log))
        .routes(routes!(langserve::input_schema))
        .routes(routes!(langserve::output_schema))
        .routes(routes!(langserve::config_schema))
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(prometheus_metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::page))
        .split_for_parts();
    let routes = routes
        .route("/docs/{file}", get(openapi::asset))
        .merge(console::routes())
        .layer(Extension(openapi::Rendered::new(&document)))
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
#[utoipa::path(get, path = "/health", tag = "Operations", responses((status = 200, description = "Live", body = schemas::Health)))]
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: every model is loaded. 503 with each model's state otherwise.
#[utoipa::path(get, path = "/ready", tag = "Operations",
    responses((status = 200, description = "Every model is loaded", body = schemas::Readiness),
              (status = 503, description = "Some model is loading or failed", body = schemas::Readiness)))]
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

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "Operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String),
              (status = 503, description = "No metrics recorder in this process", content_type = "text/plain", body = String)))]
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
