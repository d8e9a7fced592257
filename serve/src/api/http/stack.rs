//! The layers around every REST route, outermost first: a request id (`x-request-id`, kept from the client
//! or generated, echoed in the response and carried by the request's tracing span, so every log line of the
//! request names it), the trace span, CORS (when origins are configured), an early 413 for a declared
//! `Content-Length` over the limit (before `Expect: 100-continue` is answered and before any byte is read),
//! response compression (gzip, br, zstd by `Accept-Encoding`; not for event streams or small bodies), and
//! request decompression (`Content-Encoding` gzip, br, zstd, deflate; the body limit applies after it), and
//! a timeout between two pieces of a request body (a client that stops sending mid-body is given up).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, OpenAiError};
use crate::api::connections::ConnectionLimits;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// Responses smaller than this are sent as they are: compressing them costs more than it saves.
const MIN_COMPRESSED_BYTES: u16 = 1024;

/// The `[http]` table: what the layers do.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Compress responses for clients that accept it.
    pub compression: bool,
    /// Origins browsers may call from (`"*"`: any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { compression: true, cors_origins: Vec::new() }
    }
}

impl HttpConfig {
    /// Refuses origins a browser could never send.
    pub fn check(&self) -> anyhow::Result<()> {
        for origin in self.cors_origins.iter().filter(|o| *o != "*") {
            anyhow::ensure!(
                HeaderValue::from_str(origin).is_ok() && origin.contains("://"),
                "http.cors_origins: '{origin}' is not an origin like https://app.example.com"
            );
        }
        Ok(())
    }
}

/// Wraps `router` in the layers this module describes.
pub fn wrap(router: Router, config: &HttpConfig, limits: &ConnectionLimits, max_body_bytes: usize) -> Router {
    let router = router
        .layer(RequestDecompressionLayer::new())
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout()))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            refuse_declared_oversize(request, next, max_body_bytes)
        }));
    let router = if config.compression {
        let predicate = SizeAbove::new(MIN_COMPRESSED_BYTES)
            .and(NotForContentType::GRPC)
            .and(NotForContentType::IMAGES)
            .and(NotForContentType::SSE);
        // The fastest level: most of the size for a fraction of the CPU (answers are mostly numbers).
        router.layer(CompressionLayer::new().quality(CompressionLevel::Fastest).compress_when(predicate))
    } else {
        router
    };
    let router = match cors(&config.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let request_id = HeaderName::from_static("x-request-id");
    router
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        // 5xx answers are expected at times (503 while loading or overloaded): warn, not error.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| crate::telemetry::request_span("http", request))
                .on_response(
                    |response: &axum::response::Response, latency: std::time::Duration, span: &tracing::Span| {
                        crate::telemetry::record_status(span, response.status().as_u16());
                        tracing::debug!(status = response.status().as_u16(), ?latency, "finished processing request");
                    },
                )
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers(Any)
            .expose_headers(Any),
    )
}

/// 413 for a body whose declared length is over the limit, before it is read (and before hyper answers an
/// `Expect: 100-continue` with `100 Continue`, which it does only when the body is first read).
async fn refuse_declared_oversize(request: Request, next: Next, limit: usize) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        let mut response = body_too_large(limit);
        // The unread body would otherwise be read to keep the connection: close it instead.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

/// 413 in OpenAI's error shape, naming the limit.
pub(super) fn body_too_large(limit: usize) -> Response {
    let message = format!("request body is larger than the server's limit of {limit} bytes (max_body_bytes)");
    OpenAiError(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_must_be_origins() {
        let config = |origins: &[&str]| HttpConfig {
            compression: true,
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
        };
        assert!(config(&["*"]).check().is_ok());
        assert!(config(&["https://app.example.com", "http://localhost:3000"]).check().is_ok());
        assert!(config(&["app.example.com"]).check().unwrap_err().to_string().contains("not an origin"));
        assert!(cors(&[]).is_none());
    }
}
