//! Per-request scheduling over HTTP: priority and timeout from the body (`priority`, `timeout_ms`) or the
//! headers `x-ferroserve-priority` and `x-ferroserve-timeout-ms` (the body wins), and the cache mode from
//! the body's `cache` or the `x-ferroserve-cache` header.

use std::time::Duration;

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::api::auth::Principal;
use crate::cache::CacheMode;
use crate::engine::EngineError;

pub const PRIORITY_HEADER: &str = "x-ferroserve-priority";
pub const TIMEOUT_HEADER: &str = "x-ferroserve-timeout-ms";
pub const CACHE_HEADER: &str = "x-ferroserve-cache";
/// Keeps a caller on one variant of a routed alias (A/B); absent: the caller's API key name.
pub const ROUTE_KEY_HEADER: &str = "x-ferroserve-route-key";

/// The key that makes a routed alias sticky: the `x-ferroserve-route-key` header, else the caller's API key
/// name; `None` (a variant drawn at random) for an anonymous caller without the header.
pub fn route_key(headers: &HeaderMap, principal: Option<&Principal>) -> Option<String> {
    match headers.get(ROUTE_KEY_HEADER).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
        Some(key) => Some(key.to_string()),
        None => principal.and_then(Principal::route_key).map(str::to_string),
    }
}

/// The scheduling headers, described for the OpenAPI document (the body fields of the same names win).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct SchedulingHeaders {
    /// 0 is served first.
    #[param(rename = "x-ferroserve-priority", value_type = u8, required = false, maximum = 255)]
    priority: Option<u8>,
    /// Give up after this many milliseconds (at least 1).
    #[param(rename = "x-ferroserve-timeout-ms", value_type = u64, required = false, minimum = 1)]
    timeout_ms: Option<u64>,
    /// `default`, `skip`, `refresh` or `only`.
    #[param(rename = "x-ferroserve-cache", value_type = super::schemas::CacheModeSchema, required = false)]
    cache: Option<String>,
    /// Keeps the caller on one variant of a routed alias (default: the API key's name).
    #[param(rename = "x-ferroserve-route-key", value_type = String, required = false)]
    route_key: Option<String>,
}

/// Priority and timeout of one request; `None` leaves the model's default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scheduling {
    pub priority: Option<u8>,
    pub timeout: Option<Duration>,
    /// From the body field `cache` or the `x-ferroserve-cache` header (the body wins).
    pub cache: CacheMode,
}

impl Scheduling {
    /// Reads the headers, then lets the body fields override them.
    pub fn from_request(
        headers: &HeaderMap,
        priority: Option<u8>,
        timeout_ms: Option<u64>,
        cache: Option<CacheMode>,
    ) -> Result<Self, ApiError> {
        let header_priority = header_number::<u8>(headers, PRIORITY_HEADER)?;
        let header_timeout = header_number::<u64>(headers, TIMEOUT_HEADER)?;
        let timeout_ms = timeout_ms.or(header_timeout);
        if timeout_ms == Some(0) {
            return Err(EngineError::InvalidInput("timeout_ms must be at least 1".into()).into());
        }
        let cache = match (cache, headers.get(CACHE_HEADER)) {
            (Some(mode), _) => mode,
            (None, None) => CacheMode::Default,
            (None, Some(v)) => v
                .to_str()
                .map_err(|_| format!("header {CACHE_HEADER} is not text"))
                .and_then(str::parse)
                .map_err(|m| ApiError::from(EngineError::InvalidInput(m)))?,
        };
        Ok(Scheduling { priority: priority.or(header_priority), timeout: timeout_ms.map(Duration::from_millis), cache })
    }
}

fn header_number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, ApiError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    value.to_str().ok().and_then(|v| v.trim().parse().ok()).map(Some).ok_or_else(|| {
        EngineError::InvalidInput(format!("header {name} must be a non-negative integer, got {value:?}")).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_beats_headers_and_bad_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(PRIORITY_HEADER, "2".parse().unwrap());
        headers.insert(TIMEOUT_HEADER, "1500".parse().unwrap());
        let s = Scheduling::from_request(&headers, None, None, None).unwrap();
        assert_eq!(s.priority, Some(2));
        assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(s.cache, CacheMode::Default);
        let s = Scheduling::from_request(&headers, Some(0), Some(10), None).unwrap();
        assert_eq!((s.priority, s.timeout), (Some(0), Some(Duration::from_millis(10))));
        headers.insert(PRIORITY_HEADER, "high".parse().unwrap());
        let e = Scheduling::from_request(&headers, None, None, None).unwrap_err();
        assert!(e.message.contains(PRIORITY_HEADER));
        assert!(Scheduling::from_request(&HeaderMap::new(), None, Some(0), None).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_HEADER, "refresh".parse().unwrap());
        assert_eq!(Scheduling::from_request(&headers, None, None, None).unwrap().cache, CacheMode::Refresh);
        let s = Scheduling::from_request(&headers, None, None, Some(CacheMode::Skip)).unwrap();
        assert_eq!(s.cache, CacheMode::Skip, "the body wins");
        headers.insert(CACHE_HEADER, "sometimes".parse().unwrap());
        assert_eq!(route_key(&headers, Some(&Principal::anonymous())), None, "an anonymous caller is not sticky");
        headers.insert(ROUTE_KEY_HEADER, "user-42".parse().unwrap());
        assert_eq!(route_key(&headers, Some(&Principal::anonymous())).as_deref(), Some("user-42"));
        assert!(Scheduling::from_request(&headers, None, None, None).unwrap_err().message.contains("skip"));
    }
}
