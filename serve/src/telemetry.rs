//! Logs, traces and metrics: the log subscriber (text or JSON lines), OpenTelemetry traces exported over OTLP
//! (off unless an endpoint is configured), W3C trace-context propagation from incoming requests, and the
//! Prometheus recorder.
//!
//! Spans, when traces are on: one per request (`http` / `grpc`, a child of the caller's `traceparent`), and
//! below it the request's wait in a model's queue (`queue`) and its generation (`generate`); the batches a
//! lane runs (`batch`, linked to every request it carries) and their model call (`forward`), and the
//! scheduler's forward passes (`step`, linked to the sequences in them).

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// The `[tracing]` table: OpenTelemetry traces over OTLP/gRPC.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's OTLP/gRPC endpoint (`http://host:4317`); absent: `OTEL_EXPORTER_OTLP_ENDPOINT`, and
    /// without either, no traces.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans (`OTEL_SERVICE_NAME` wins).
    pub service_name: String,
    /// Share of new traces kept (0 to 1); a request that arrives with a sampled `traceparent` is always kept.
    pub sample_ratio: f64,
    /// Compression of the export: `gzip`, `zstd` or none.
    pub compression: Option<String>,
    /// Seconds one export may take.
    pub export_timeout_secs: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            service_name: "ferroserve".into(),
            sample_ratio: 1.0,
            compression: None,
            export_timeout_secs: 10,
        }
    }
}

impl TracingConfig {
    /// Where to export, when traces are on.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.trim().is_empty())
    }

    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.sample_ratio),
            "tracing.sample_ratio must be between 0 and 1, got {}",
            self.sample_ratio
        );
        if let Some(c) = &self.compression {
            anyhow::ensure!(
                matches!(c.as_str(), "gzip" | "zstd"),
                "tracing.compression must be gzip or zstd, got {c:?}"
            );
        }
        Ok(())
    }
}

/// Keeps the trace exporter; [`Telemetry::shutdown`] sends what is still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (at the end of `serve`).
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

static TRACES_ON: OnceLock<bool> = OnceLock::new();

/// Whether spans go to an OpenTelemetry exporter (then request spans carry OpenTelemetry's names and kinds).
pub fn traces_on() -> bool {
    TRACES_ON.get().copied().unwrap_or(false)
}

/// Installs the global subscriber: log lines (levels from `RUST_LOG`, `info` by default) and, when an OTLP
/// endpoint is configured, the OpenTelemetry layer.
pub fn init_tracing(format: LogFormat, config: &TracingConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (text, json) = match format {
        LogFormat::Text => (Some(tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi)), None),
        LogFormat::Json => (None, Some(tracing_subscriber::fmt::layer().with_target(false).json())),
    };
    let provider = match config.endpoint() {
        Some(endpoint) => Some(otlp_provider(&endpoint, config)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("ferroserve")));
    let _ = TRACES_ON.set(provider.is_some());
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let _ = tracing_subscriber::registry().with(filter).with(otel).with(text).with(json).try_init();
    if let Some(endpoint) = config.endpoint().filter(|_| provider.is_some()) {
        tracing::info!(%endpoint, sample_ratio = config.sample_ratio, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// The OTLP/gRPC exporter behind a batch processor. The exporter's connection lives on a runtime of its own
/// (one thread), so exports never wait for, or take time from, the request runtime.
fn otlp_provider(endpoint: &str, config: &TracingConfig) -> anyhow::Result<SdkTracerProvider> {
    let (built, exporter) = std::sync::mpsc::channel();
    let endpoint = endpoint.to_string();
    let timeout = Duration::from_secs(config.export_timeout_secs.max(1));
    let compression = match config.compression.as_deref() {
        Some("gzip") => Some(opentelemetry_otlp::Compression::Gzip),
        Some("zstd") => Some(opentelemetry_otlp::Compression::Zstd),
        _ => None,
    };
    std::thread::Builder::new().name("ferroserve-otlp".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = built.send(Err(anyhow::Error::from(e)));
                return;
            }
        };
        runtime.block_on(async move {
            let mut builder =
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).with_timeout(timeout);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            let _ = built.send(builder.build().map_err(anyhow::Error::from));
            // Keeps the connection's tasks running for the life of the process.
            std::future::pending::<()>().await;
        });
    })?;
    let exporter = exporter.recv().context("the OTLP exporter thread ended")?.context("OTLP exporter")?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| config.service_name.clone());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
        .build())
}

/// The span of one incoming request (`kind`: `http` or `grpc`), a child of the trace its `traceparent`
/// header names. With traces on it is named `METHOD path` (HTTP) or the gRPC method, as a server span.
pub fn request_span<B>(kind: &'static str, request: &axum::http::Request<B>) -> tracing::Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let (method, path) = (request.method(), request.uri().path());
    if !traces_on() {
        return match kind {
            "grpc" => tracing::info_span!("grpc", request_id = %id, method = %path),
            _ => tracing::info_span!("http", request_id = %id, method = %method, path = %path),
        };
    }
    let span = match kind {
        "grpc" => tracing::info_span!("grpc", otel.name = %path.trim_start_matches('/'), otel.kind = "server",
                                      request_id = %id, rpc.system = "grpc", otel.status_code = tracing::field::Empty),
        _ => {
            tracing::info_span!("http", otel.name = %format!("{method} {path}"), otel.kind = "server", request_id = %id,
                                 http.request.method = %method, url.path = %path,
                                 http.response.status_code = tracing::field::Empty,
                                 otel.status_code = tracing::field::Empty)
        }
    };
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
    let _ = span.set_parent(parent);
    span
}

/// Records a finished HTTP request's status on its span (traces on).
pub fn record_status(span: &tracing::Span, status: u16) {
    if traces_on() {
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Incoming headers as OpenTelemetry's propagator reads them.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_settings_are_checked() {
        assert!(TracingConfig::default().check().is_ok());
        let ratio = TracingConfig { sample_ratio: 1.5, ..Default::default() };
        assert!(ratio.check().unwrap_err().to_string().contains("sample_ratio"));
        let compression = TracingConfig { compression: Some("brotli".into()), ..Default::default() };
        assert!(compression.check().unwrap_err().to_string().contains("gzip or zstd"));
        let configured = TracingConfig { otlp_endpoint: Some("http://collector:4317".into()), ..Default::default() };
        assert_eq!(configured.endpoint().as_deref(), Some("http://collector:4317"));
        let blank = TracingConfig { otlp_endpoint: Some(" ".into()), ..Default::default() };
        assert_eq!(blank.endpoint(), None, "a blank endpoint leaves traces off");
    }

    #[test]
    fn the_tracing_table_parses_and_rejects_unknown_fields() {
        let t: TracingConfig = toml::from_str("otlp_endpoint = \"http://c:4317\"\nsample_ratio = 0.25").unwrap();
        assert_eq!((t.otlp_endpoint.as_deref(), t.sample_ratio), (Some("http://c:4317"), 0.25));
        assert!(toml::from_str::<TracingConfig>("endpoint = \"x\"").is_err());
    }
}
