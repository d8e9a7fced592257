//! Per-call scheduling over gRPC: priority from the message field or the `x-ferroserve-priority` metadata,
//! and the deadline from the message's `timeout_ms` or the standard `grpc-timeout` header (the sooner wins).

use crate::api::auth::Principal;
use std::time::{Duration, Instant};

use tonic::Status;

use crate::cache::CacheMode;
use tonic::metadata::MetadataMap;

/// What a call's metadata says; each message may narrow it.
#[derive(Debug, Default, Clone)]
pub struct CallOptions {
    pub priority: Option<u8>,
    pub deadline: Option<Instant>,
    /// Metadata `x-ferroserve-cache`: default | skip | refresh | only.
    pub cache: CacheMode,
    /// Keeps the caller on one variant of a routed alias: metadata `x-ferroserve-route-key`, else the API
    /// key's name (see [`CallOptions::keyed_by`]).
    pub route_key: Option<String>,
}

impl CallOptions {
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, Status> {
        let priority = match metadata.get("x-ferroserve-priority") {
            None => None,
            Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<u8>().ok()).ok_or_else(|| {
                Status::invalid_argument(format!("metadata x-ferroserve-priority must be a small integer, got {v:?}"))
            })?),
        };
        let deadline = match metadata.get("grpc-timeout") {
            None => None,
            Some(v) => {
                let parsed = v.to_str().ok().and_then(parse_grpc_timeout);
                Some(
                    Instant::now()
                        + parsed.ok_or_else(|| Status::invalid_argument(format!("bad grpc-timeout {v:?}")))?,
                )
            }
        };
        let cache = match metadata.get("x-ferroserve-cache") {
            None => CacheMode::Default,
            Some(v) => v
                .to_str()
                .map_err(|_| "not text".to_string())
                .and_then(str::parse)
                .map_err(|m: String| Status::invalid_argument(format!("metadata x-ferroserve-cache: {m}")))?,
        };
        let route_key = metadata
            .get("x-ferroserve-route-key")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Ok(CallOptions { priority, deadline, cache, route_key })
    }

    /// Without a route key in the metadata, the caller's API key name keeps it on one variant.
    pub fn keyed_by(mut self, principal: Option<&Principal>) -> Self {
        if self.route_key.is_none() {
            self.route_key = principal.and_then(Principal::route_key).map(str::to_string);
        }
        self
    }

    /// Priority and remaining time for one message with its own `priority` and `timeout_ms` fields.
    pub fn for_message(
        &self,
        priority: Option<u32>,
        timeout_ms: Option<u32>,
    ) -> Result<(Option<u8>, Option<Duration>), Status> {
        let priority = match priority {
            None => self.priority,
            Some(p) => {
                Some(u8::try_from(p).map_err(|_| Status::invalid_argument(format!("priority {p} is out of range")))?)
            }
        };
        if timeout_ms == Some(0) {
            return Err(Status::invalid_argument("timeout_ms must be at least 1"));
        }
        let now = Instant::now();
        let own = timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        let call = self.deadline.map(|d| d.saturating_duration_since(now).max(Duration::from_millis(1)));
        let timeout = match (own, call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((priority, timeout))
    }
}

/// Parses the gRPC wire format of a timeout: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789m"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }

    #[test]
    fn message_fields_narrow_the_call() {
        let mut md = MetadataMap::new();
        md.insert("x-ferroserve-priority", "2".parse().unwrap());
        md.insert("grpc-timeout", "10S".parse().unwrap());
        let call = CallOptions::from_metadata(&md).unwrap();
        let (p, t) = call.for_message(None, Some(50)).unwrap();
        assert_eq!((p, t), (Some(2), Some(Duration::from_millis(50))));
        let (p, t) = call.for_message(Some(0), None).unwrap();
        assert_eq!(p, Some(0));
        assert!(t.unwrap() > Duration::from_secs(9));
        assert!(call.for_message(Some(300), None).is_err());
        md.insert("x-ferroserve-priority", "urgent".parse().unwrap());
        assert!(CallOptions::from_metadata(&md).is_err());
    }
}
