//! Rate limits on the REST routes, after the key is known: the middleware asks the engine's limiter for the
//! caller's key, answers 429 with `Retry-After` when a bucket is empty, and sends OpenAI's
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers on every limited answer. A request's
//! tokens are estimated before it runs, as OpenAI does for its limits: a quarter of the body's characters plus
//! the `max_tokens` it asks for ([`EstimatedTokens`], found by the auth middleware's one read of the body).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, OpenAiError, caused_by};
use crate::api::auth::{Access, Principal};
use crate::engine::Engine;
use crate::ratelimit::{BucketState, Decision};

/// What the middleware needs.
#[derive(Clone)]
pub struct LimitState {
    pub engine: Arc<Engine>,
}

/// Applies the caller's limits (none for open routes or keys without limits).
pub async fn limit(State(state): State<LimitState>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    let open = request.extensions().get::<Access>() == Some(&Access::Open);
    if open || principal.limits.is_empty() {
        return next.run(request).await;
    }
    let tokens = request.extensions().get::<EstimatedTokens>().map_or(0, |t| t.0);
    match state.engine.rate_limiter().admit(&principal.name, &principal.limits, tokens).await {
        Decision::Allowed(states) => {
            let mut response = next.run(request).await;
            add_headers(response.headers_mut(), &states);
            response
        }
        Decision::Refused { retry_after, states, message, .. } => {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let refused =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", message).retry_after(secs);
            let mut response = OpenAiError(refused).into_response();
            let headers = response.headers_mut();
            add_headers(headers, &states);
            headers.insert("retry-after-ms", HeaderValue::from(retry_after.as_millis().max(1) as u64));
            response
        }
    }
}

/// The request with its body read (within the limit), and the body; 413 over the limit, 408 when the body
/// stopped arriving, 400 when it could not be read.
pub async fn buffered(request: Request, max_body_bytes: usize) -> Result<(Request, Bytes), Response> {
    let (parts, body) = request.into_parts();
    let error = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => return Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes)),
        Err(e) => e,
    };
    if caused_by::<http_body_util::LengthLimitError>(&error) {
        return Err(super::stack::body_too_large(max_body_bytes));
    }
    let refused = if caused_by::<tower_http::timeout::TimeoutError>(&error) {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the request body stopped arriving")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("the request body could not be read: {error}"))
    };
    Err(OpenAiError(refused).into_response())
}

/// A request's tokens as its key's token limit counts them: a quarter of the body's characters plus the
/// completion tokens it asks for (set by the auth middleware, which reads the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimatedTokens(pub u64);

impl EstimatedTokens {
    pub fn of(body: &[u8], asked: u64) -> Self {
        let characters = String::from_utf8_lossy(body).chars().count() as u64;
        EstimatedTokens(characters.div_ceil(4) + asked)
    }
}

fn add_headers(headers: &mut HeaderMap, states: &[BucketState]) {
    for state in states {
        let mut set = |what: &str, value: String| {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(format!("x-ratelimit-{what}-{}", state.name)), HeaderValue::from_str(&value))
            {
                headers.insert(name, value);
            }
        };
        set("limit", format!("{}", state.limit.round() as u64));
        set("remaining", format!("{}", state.remaining.floor() as u64));
        set("reset", seconds(state.reset));
    }
}

/// A duration as OpenAI writes resets: `0.25s`, `12s`.
fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 { format!("{:.2}s", (secs * 100.0).ceil() / 100.0) } else { format!("{}s", secs.ceil() as u64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_estimated_from_characters_and_max_tokens() {
        assert_eq!(EstimatedTokens::of(br#"{"input":"abcd"}"#, 0), EstimatedTokens(4));
        assert_eq!(EstimatedTokens::of(br#"{"messages":[],"max_tokens":100}"#, 100), EstimatedTokens(8 + 100));
        assert_eq!(EstimatedTokens::of("é".as_bytes(), 0), EstimatedTokens(1), "characters, not bytes");
    }

    #[test]
    fn headers_follow_openai() {
        let mut headers = HeaderMap::new();
        let state = |name, remaining, reset| BucketState { name, limit: 10.0, remaining, reset };
        add_headers(
            &mut headers,
            &[state("requests", 3.7, Duration::from_millis(1234)), state("tokens", 0.0, Duration::from_secs(42))],
        );
        assert_eq!(headers["x-ratelimit-limit-requests"], "10");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "3");
        assert_eq!(headers["x-ratelimit-reset-requests"], "1.24s");
        assert_eq!(headers["x-ratelimit-reset-tokens"], "42s");
    }
}
