//! Logs (tracing) and metrics (Prometheus exposition) set-up.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global log subscriber; levels from `RUST_LOG`, `info` by default.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Latency buckets from 0.5 ms to 60 s.
const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the global metrics recorder and returns the handle that renders `/metrics`, or `None` if a
/// recorder was already installed. Spawns the upkeep task that keeps histograms bounded.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("ferroserve_batch_size".into()), BATCH_BUCKETS));
    let handle = match builder.and_then(|b| b.install_recorder()) {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            return None;
        }
    };
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("ferroserve_http_requests_total", "HTTP requests by route, model and status");
    describe_counter!("ferroserve_http_errors_total", "HTTP requests answered with 4xx/5xx");
    describe_histogram!("ferroserve_http_request_duration_seconds", Unit::Seconds, "HTTP request latency");
    describe_counter!(
        "ferroserve_grpc_requests_total",
        "gRPC calls by method, model and status code (every outcome, also calls that never reached a handler)"
    );
    describe_histogram!("ferroserve_grpc_request_duration_seconds", Unit::Seconds, "gRPC call latency");
    describe_counter!(
        "ferroserve_model_requests_total",
        "Engine requests by model and outcome (ok: answered, or for generation accepted and streaming)"
    );
    describe_counter!("ferroserve_input_tokens_total", "Input tokens embedded, by model");
    describe_gauge!("ferroserve_queue_depth", "Sequences (inputs) waiting for a lane, by model");
    describe_histogram!("ferroserve_queue_time_seconds", Unit::Seconds, "Time a sequence waited for a lane");
    describe_histogram!("ferroserve_compute_time_seconds", Unit::Seconds, "Forward-pass time per batch");
    describe_histogram!("ferroserve_batch_size", "Sequences per forward pass");
    describe_counter!("ferroserve_rejected_total", "Requests refused at admission, by reason");
    describe_gauge!("ferroserve_vector_points", "Points of a vector collection");
    describe_gauge!("ferroserve_vector_graph_points", "Nodes of a collection's HNSW graph, tombstones included");
    describe_gauge!("ferroserve_vector_memory_bytes", "Bytes of vectors and payloads a collection holds");
    describe_counter!("ferroserve_cache_evictions_total", "Cache entries that left a cache, by cache and cause");
    describe_counter!("ferroserve_dropped_total", "Queued work dropped before compute, by reason");
}
