//! The web console: `GET /ui` and its files (built from `serve/ui` by `make ui` and compiled into the binary,
//! nothing fetched at run time), and the two routes only it needs beside the public APIs: every model's
//! state with its lanes (`GET /models`) and the results of `ferroserve bench` runs
//! (`GET /bench/runs`, `GET /bench/runs/{run}/{file}`).

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, OpenAiError};
use super::openapi::static_file;
use super::schemas::{BenchRunList, ModelStatusList, OpenAiErrorBody};
use crate::api::auth::Principal;
use crate::bench::runs;

/// The console's page and files; anyone may fetch them (the page asks for an API key when the server wants one).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", axum::routing::get(page))
        .route("/ui/", axum::routing::get(|| async { axum::response::Redirect::permanent("../ui") }))
        .route("/ui/{file}", axum::routing::get(asset))
}

async fn page() -> Response {
    console_file("text/html; charset=utf-8", PAGE)
}

async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => console_file("text/javascript; charset=utf-8", APP_JS),
        "style.css" => console_file("text/css; charset=utf-8", STYLE_CSS),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Revalidated on every load, so a rebuilt binary's console is never mixed with a cached older file.
fn console_file(content_type: &'static str, body: &'static [u8]) -> Response {
    static_file(content_type, "no-cache", body)
}

const PAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ui/index.html"));
const APP_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ui/app.js"));
const STYLE_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ui/style.css"));

/// The models of the repository the caller's key may use: state, why it failed, backend, weight format,
/// lanes and devices.
#[utoipa::path(get, path = "/models", tag = "Operations",
    responses((status = 200, description = "Each model's state and lanes", body = ModelStatusList),
              (status = "4XX", description = "Missing or insufficient key", body = OpenAiErrorBody)))]
pub async fn models(State(state): State<AppState>, principal: Option<Extension<Principal>>) -> Json<Value> {
    let models: Vec<Value> = state
        .engine
        .list_models()
        .into_iter()
        .filter(|m| principal.as_ref().is_none_or(|p| p.may_use(&m.name)))
        .map(|m| {
            json!({
                "name": m.name, "task": m.task.as_str(), "backend": m.backend, "state": m.state, "error": m.error,
                "dtype": m.dtype, "bytes": m.bytes, "dimensions": m.dimensions,
                "max_input_tokens": m.max_input_tokens, "lanes": m.lanes,
            })
        })
        .collect();
    Json(json!({"models": models}))
}

/// The `ferroserve bench` runs in the configured results folder (`ui.bench_results`), newest first: each
/// with its table (CSV) and the names of its plots.
#[utoipa::path(get, path = "/bench/runs", tag = "Operations",
    responses((status = 200, description = "The runs, and the folder they are read from", body = BenchRunList),
              (status = "4XX", description = "Missing or insufficient key", body = OpenAiErrorBody)))]
pub async fn bench_runs(State(state): State<AppState>) -> Json<Value> {
    let folder = state.bench_results.as_deref();
    let list = folder.map(runs::list_runs).unwrap_or_default();
    Json(json!({"folder": folder.map(|f| f.display().to_string()), "runs": list}))
}

/// One file of a bench run: a plot (SVG, PNG), its table (CSV) or its report (JSON).
#[utoipa::path(get, path = "/bench/runs/{run}/{file}", tag = "Operations",
    params(("run" = String, Path, description = "The run's folder"), ("file" = String, Path, description = "A file in it")),
    responses((status = 200, description = "The file", content_type = "image/svg+xml", body = String),
              (status = 404, description = "No such run or file", body = OpenAiErrorBody)))]
pub async fn bench_file(State(state): State<AppState>, Path((run, file)): Path<(String, String)>) -> Response {
    let found = state.bench_results.as_deref().and_then(|folder| runs::run_file(folder, &run, &file));
    match found {
        Some((content_type, bytes)) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        None => {
            let message = format!("no bench run file {run}/{file} (plots, tables and reports of the results folder)");
            OpenAiError(ApiError::new(StatusCode::NOT_FOUND, "not_found_error", message)).into_response()
        }
    }
}
