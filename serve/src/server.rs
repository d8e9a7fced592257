//! `ferroserve serve`: loads the model repository, serves HTTP and gRPC in one process, and shuts down
//! gracefully on SIGINT/SIGTERM (stop accepting, let in-flight requests finish within the grace period).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::api::auth::{ENV_API_KEY, Keys};
use crate::api::tls::Tls;
use crate::api::{grpc, http};
use crate::config::ServerConfig;
use crate::engine::{Engine, EngineLimits};
use crate::repository::{ModelEntry, read_repository};
use crate::telemetry;
use crate::threads::ThreadBudget;

/// Reads the model repository the config names; at least one model is needed.
pub fn read_models(config: &ServerConfig) -> anyhow::Result<Vec<ModelEntry>> {
    let dir = &config.model_repository;
    let models = read_repository(dir).with_context(|| format!("reading model repository {}", dir.display()))?;
    anyhow::ensure!(!models.is_empty(), "model repository {} has no *.toml model configs", dir.display());
    Ok(models)
}

/// Runs the server until a shutdown signal, then drains.
pub async fn run(config: ServerConfig, models: Vec<ModelEntry>, budget: ThreadBudget) -> anyhow::Result<()> {
    let limits =
        EngineLimits { max_client_batch_size: config.max_client_batch_size, max_loaded_mb: config.max_loaded_mb };
    let engine = Engine::new(
        models,
        limits,
        budget,
        &config.cache,
        config.vectors.clone(),
        Some(config.chains_folder()),
        Some(config.model_repository.clone()),
    )?;
    for route in &config.routes {
        engine.set_route(route.clone()).map_err(|e| anyhow::anyhow!("[[routes]] {:?}: {e}", route.alias))?;
    }
    let prometheus = telemetry::init_metrics();
    let keys = api_keys(&config)?;
    let tls = Tls::start(&config.tls)?;

    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding HTTP address {}", config.http_addr))?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", config.grpc_addr))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(http = %http_listener.local_addr()?, grpc = %grpc_listener.local_addr()?, scheme, "listening");

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let loader = engine.clone();
    let reload = std::time::Duration::from_secs(config.chains.reload_secs);
    let poll = std::time::Duration::from_secs(config.repository_poll_secs);
    tokio::spawn(async move { loader.start(reload, poll).await });

    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let bench_results = config.ui.bench_results.clone();
    let state = http::AppState { engine: engine.clone(), prometheus, started_unix, bench_results };
    let app = http::router(state, keys.clone(), &config.http, &config.connections, config.max_body_bytes);
    let http_server =
        http::serve(http_listener, app, &config.connections, tls.as_ref().map(|t| t.http.clone()), shutdown.clone());
    let grpc_server = grpc::serve(engine, grpc_listener, keys, tls.map(|t| t.grpc), &config, shutdown.clone());

    let servers = async { tokio::try_join!(async { http_server.await.context("HTTP server") }, grpc_server) };
    tokio::pin!(servers);
    tokio::select! {
        result = &mut servers => { result?; }
        _ = shutdown.cancelled() => {
            tracing::info!(grace_secs = config.shutdown_grace_secs, "shutting down: finishing in-flight requests");
            match tokio::time::timeout(config.shutdown_grace(), &mut servers).await {
                Ok(result) => { result?; }
                Err(_) => tracing::warn!("grace period over; dropping the requests still in flight"),
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The API keys of `[auth]` and the environment; `None` (authentication off) with a warning when either
/// port listens beyond loopback.
fn api_keys(config: &ServerConfig) -> anyhow::Result<Option<Arc<Keys>>> {
    let keys = Keys::from_config(&config.auth, std::env::var(ENV_API_KEY).ok().as_deref())?;
    match &keys {
        Some(_) => tracing::info!(keys = config.auth.keys.len(), "API keys required"),
        None if !(config.http_addr.ip().is_loopback() && config.grpc_addr.ip().is_loopback()) => tracing::warn!(
            "no API keys are configured and the server listens beyond loopback: anyone who reaches the ports may \
             call every model and change collections, chains and caches (set [[auth.keys]] or {ENV_API_KEY})"
        ),
        None => {}
    }
    Ok(keys.map(Arc::new))
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}
