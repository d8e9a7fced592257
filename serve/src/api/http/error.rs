//! HTTP errors: one mapping from engine errors and body-parsing failures to status codes, rendered in the
//! shape each API's clients expect (OpenAI's `{"error":{...}}` or TEI's `{"error","error_type"}`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;

/// A failed request: the status, a message that says what is wrong, and a stable kind.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, retry_after_secs: None }
    }

    /// Answers with `Retry-After: secs` (429 and 503 answers).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    fn with_headers(self, body: serde_json::Value) -> Response {
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e.cause() {
            EngineError::ModelNotFound(_)
            | EngineError::CollectionNotFound(_)
            | EngineError::ChainNotFound(_)
            | EngineError::ModelUnloaded(_)
            | EngineError::CacheMiss => StatusCode::NOT_FOUND,
            EngineError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Upstream(_) => StatusCode::BAD_GATEWAY,
            EngineError::UpstreamUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::InvalidInput(_) | EngineError::InputTooLong(_) => StatusCode::BAD_REQUEST,
            EngineError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            EngineError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            EngineError::ModelLoading { .. } | EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::ModelFailed { .. } | EngineError::Internal(_) | EngineError::InStep { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let retry_after_secs = match e.cause() {
            EngineError::Overloaded { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            EngineError::ModelLoading { .. } => Some(1),
            _ => None,
        };
        ApiError { status, message: e.public_message(), kind: e.kind(), retry_after_secs }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, kind) = match &r {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            JsonRejection::JsonDataError(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            JsonRejection::MissingJsonContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            _ if body_timed_out(&r) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            _ => (r.status(), "invalid_body"),
        };
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "request body is larger than the server's limit (max_body_bytes)".into(),
            StatusCode::REQUEST_TIMEOUT => {
                "the request body stopped arriving (connections.body_read_timeout_secs passed between two pieces)"
                    .into()
            }
            _ => r.body_text(),
        };
        ApiError::new(status, kind, message)
    }
}

/// Whether reading the body failed because the client stopped sending it (the body-read timeout).
fn body_timed_out(r: &JsonRejection) -> bool {
    caused_by::<tower_http::timeout::TimeoutError>(r)
}

/// Whether `T` is `e` or anywhere in its chain of sources.
pub fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<T>())
}

/// An error rendered the OpenAI way: `{"error": {"message", "type", "param", "code"}}`.
pub struct OpenAiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let kind = match e.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {"message": e.message, "type": kind, "param": null, "code": e.kind}});
        e.with_headers(body)
    }
}

/// An error rendered the TEI way: `{"error", "error_type"}`, with TEI's 422 for validation failures.
pub struct TeiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for TeiError {
    fn from(e: E) -> Self {
        TeiError(e.into())
    }
}

impl IntoResponse for TeiError {
    fn into_response(mut self) -> Response {
        let error_type = match self.0.kind {
            "overloaded" | "deadline_exceeded" => "Overloaded",
            "model_loading" | "shutting_down" => "Unhealthy",
            "internal" | "model_failed" => "Backend",
            _ if self.0.status == StatusCode::NOT_FOUND => "NotFound",
            _ => "Validation",
        };
        if self.0.status == StatusCode::BAD_REQUEST && self.0.kind != "malformed_json" {
            self.0.status = StatusCode::UNPROCESSABLE_ENTITY;
        }
        let body = json!({"error": self.0.message, "error_type": error_type});
        self.0.with_headers(body)
    }
}
