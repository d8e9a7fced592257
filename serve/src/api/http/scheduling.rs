//! Per-request scheduling over HTTP: priority and timeout from the body (`priority`, `timeout_ms`) or the
//! headers `x-ferroserve-priority` and `x-ferroserve-timeout-ms` (the body wins), and the timing headers
//! every embedding response carries (`x-queue-time`, `x-inference-time`, in milliseconds, as TEI does).

use std::time::Duration;

use axum::Json;
use axum::http::HeaderMap;

use super::error::ApiError;
use crate::engine::{EmbedOutput, EngineError};

pub const PRIORITY_HEADER: &str = "x-ferroserve-priority";
pub const TIMEOUT_HEADER: &str = "x-ferroserve-timeout-ms";

/// Priority and timeout of one request; `None` leaves the model's default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scheduling {
    pub priority: Option<u8>,
    pub timeout: Option<Duration>,
}

impl Scheduling {
    /// Reads the headers, then lets the body fields override them.
    pub fn from_request(headers: &HeaderMap, priority: Option<u8>, timeout_ms: Option<u64>) -> Result<Self, ApiError> {
        let header_priority = header_number::<u8>(headers, PRIORITY_HEADER)?;
        let header_timeout = header_number::<u64>(headers, TIMEOUT_HEADER)?;
        let timeout_ms = timeout_ms.or(header_timeout);
        if timeout_ms == Some(0) {
            return Err(EngineError::InvalidInput("timeout_ms must be at least 1".into()).into());
        }
        Ok(Scheduling { priority: priority.or(header_priority), timeout: timeout_ms.map(Duration::from_millis) })
    }
}

fn header_number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    value.to_str().ok().and_then(|v| v.trim().parse().ok()).map(Some).ok_or_else(|| {
        EngineError::InvalidInput(format!("header {name} must be a non-negative integer, got {value:?}")).into()
    })
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The timing headers of a request.
pub type TimingHeaders = [(&'static str, String); 2];

/// A JSON body with the request's timing headers.
pub type Timed<T> = (TimingHeaders, Json<T>);

pub fn timing_headers(out: &EmbedOutput) -> TimingHeaders {
    [("x-queue-time", millis(out.queue_time)), ("x-inference-time", millis(out.compute_time))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_beats_headers_and_bad_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(PRIORITY_HEADER, "2".parse().unwrap());
        headers.insert(TIMEOUT_HEADER, "1500".parse().unwrap());
        let s = Scheduling::from_request(&headers, None, None).unwrap();
        assert_eq!(s, Scheduling { priority: Some(2), timeout: Some(Duration::from_millis(1500)) });
        let s = Scheduling::from_request(&headers, Some(0), Some(10)).unwrap();
        assert_eq!(s, Scheduling { priority: Some(0), timeout: Some(Duration::from_millis(10)) });
        headers.insert(PRIORITY_HEADER, "high".parse().unwrap());
        let e = Scheduling::from_request(&headers, None, None).unwrap_err();
        assert!(e.message.contains(PRIORITY_HEADER));
        assert!(Scheduling::from_request(&HeaderMap::new(), None, Some(0)).is_err());
    }
}
