//! Rate limits per API key: a token bucket for requests per second and one for tokens per minute, kept in
//! this process, or shared by every replica through Redis when the shared cache is configured (one script
//! checks and takes both buckets atomically, on the cache's connection and through its circuit breaker:
//! with Redis unreachable, each replica falls back to its own buckets and keeps serving).

mod bucket;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cache::shared::SharedCache;
use bucket::{Bucket, Limit};

/// The limits of one key (keys of `[[auth.keys]]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Requests per second, refilled continuously; `None`: no limit.
    pub requests_per_second: Option<f64>,
    /// Requests that may come at once after a quiet spell; default: one second's worth (at least 1).
    pub burst: Option<f64>,
    /// Tokens per minute: a request costs its estimated tokens (characters / 4, plus `max_tokens` asked
    /// for), as OpenAI counts against its limits; `None`: no limit.
    pub tokens_per_minute: Option<f64>,
}

impl RateLimits {
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("requests_per_second", self.requests_per_second),
            ("burst", self.burst),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            anyhow::ensure!(value.is_none_or(|v| v.is_finite() && v > 0.0), "{name} must be above 0");
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.requests_per_second.is_none() && self.tokens_per_minute.is_none()
    }

    pub fn limits_tokens(&self) -> bool {
        self.tokens_per_minute.is_some()
    }

    /// The buckets a request of `tokens` draws from: (name, limit).
    fn buckets(&self, tokens: u64) -> Vec<(&'static str, Limit)> {
        let mut buckets = Vec::new();
        if let Some(rps) = self.requests_per_second {
            let capacity = self.burst.unwrap_or(rps).max(1.0);
            buckets.push(("requests", Limit { capacity, per_sec: rps, cost: 1.0 }));
        }
        if let Some(tpm) = self.tokens_per_minute {
            buckets.push(("tokens", Limit { capacity: tpm, per_sec: tpm / 60.0, cost: tokens as f64 }));
        }
        buckets
    }
}

/// Where a bucket stands after a request, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketState {
    /// `requests` or `tokens`.
    pub name: &'static str,
    pub limit: f64,
    pub remaining: f64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// The answer for one request: let in (with where its buckets stand), or refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allowed(Vec<BucketState>),
    /// `message` says which key and bucket, and when to retry (both transports send it).
    Refused {
        bucket: &'static str,
        retry_after: Duration,
        states: Vec<BucketState>,
        message: String,
    },
}

/// The buckets of every key.
pub struct RateLimiter {
    /// Per key, its buckets in the order of [`RateLimits::buckets`] (a key's limits do not change).
    local: Mutex<HashMap<String, Vec<Bucket>>>,
    shared: Option<Arc<SharedCache>>,
}

/// Checks every bucket, then takes from all of them only if all pass. KEYS: the buckets; ARGV: `capacity,
/// per_sec, cost` for each. Returns, for each bucket, its level after (as a string: Lua numbers lose their
/// fraction on the way out), led by 1 (taken) or 0 (refused).
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT_TEXT));

const SCRIPT_TEXT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels, pass = {}, 1
for i, key in ipairs(KEYS) do
  local cap, rate, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local b = redis.call('HMGET', key, 'level', 'at')
  local level, at = tonumber(b[1]) or cap, tonumber(b[2]) or now
  level = math.min(cap, level + math.max(0, now - at) * rate)
  levels[i] = level
  if level < math.min(cost, cap) then pass = 0 end
end
local out = {pass}
for i, key in ipairs(KEYS) do
  local cap, rate, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  if pass == 1 then levels[i] = levels[i] - cost end
  redis.call('HSET', key, 'level', tostring(levels[i]), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((cap - levels[i]) / rate * 1000) + 1000)
  out[i + 1] = tostring(levels[i])
end
return out
"#;

impl RateLimiter {
    /// `shared`: the Redis of the shared cache, when configured.
    pub fn new(shared: Option<Arc<SharedCache>>) -> Self {
        RateLimiter { local: Mutex::new(HashMap::new()), shared }
    }

    /// Lets a request of `key` costing `tokens` in, or says how long to wait.
    pub async fn admit(&self, key: &str, limits: &RateLimits, tokens: u64) -> Decision {
        let buckets = limits.buckets(tokens);
        if buckets.is_empty() {
            return Decision::Allowed(Vec::new());
        }
        let shared = match &self.shared {
            Some(redis) => self.admit_shared(redis, key, &buckets).await,
            None => None,
        };
        let (taken, levels) = match shared {
            Some(answer) => answer,
            None => self.admit_local(key, &buckets),
        };
        let mut decision = decide(&buckets, taken, &levels);
        if let Decision::Refused { bucket, retry_after, message, .. } = &mut decision {
            metrics::counter!("ferroserve_rate_limited_total", "key" => key.to_string(), "bucket" => *bucket)
                .increment(1);
            *message =
                format!("API key '{key}' is over its {bucket} limit; retry in {:.1} s", retry_after.as_secs_f64());
        }
        decision
    }

    fn admit_local(&self, key: &str, buckets: &[(&'static str, Limit)]) -> (bool, Vec<f64>) {
        let now = Instant::now();
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if !local.contains_key(key) {
            local.insert(key.to_string(), buckets.iter().map(|(_, limit)| Bucket::full(limit, now)).collect());
        }
        let Some(kept) = local.get_mut(key) else { return (true, Vec::new()) };
        let mut levels: Vec<f64> =
            buckets.iter().zip(kept.iter_mut()).map(|((_, limit), bucket)| bucket.level(limit, now)).collect();
        let taken = buckets.iter().zip(&levels).all(|((_, limit), level)| limit.passes(*level));
        if taken {
            for (((_, limit), bucket), level) in buckets.iter().zip(kept.iter_mut()).zip(levels.iter_mut()) {
                *level = bucket.take(limit.cost);
            }
        }
        (taken, levels)
    }

    /// `None` when Redis did not answer (the caller falls back to the local buckets).
    async fn admit_shared(
        &self,
        redis: &SharedCache,
        key: &str,
        buckets: &[(&'static str, Limit)],
    ) -> Option<(bool, Vec<f64>)> {
        let keys: Vec<String> = buckets.iter().map(|(name, _)| redis.rate_key(key, name)).collect();
        let args: Vec<String> = buckets
            .iter()
            .flat_map(|(_, l)| [l.capacity.to_string(), l.per_sec.to_string(), l.cost.to_string()])
            .collect();
        let answer: Vec<String> = redis.eval(&SCRIPT, &keys, &args).await?;
        let (taken, levels) = answer.split_first()?;
        let levels: Option<Vec<f64>> = levels.iter().map(|l| l.parse().ok()).collect();
        let levels = levels.filter(|l| l.len() == buckets.len())?;
        Some((taken == "1", levels))
    }
}

fn decide(buckets: &[(&'static str, Limit)], taken: bool, levels: &[f64]) -> Decision {
    let states: Vec<BucketState> = buckets
        .iter()
        .zip(levels)
        .map(|((name, limit), level)| BucketState {
            name,
            limit: limit.capacity,
            remaining: level.max(0.0),
            reset: limit.until_full(*level),
        })
        .collect();
    if taken {
        return Decision::Allowed(states);
    }
    let (bucket, retry_after) = buckets
        .iter()
        .zip(levels)
        .map(|((name, limit), level)| (*name, limit.wait(*level)))
        .max_by_key(|(_, wait)| *wait)
        .unwrap_or(("requests", Duration::ZERO));
    Decision::Refused { bucket, retry_after, states, message: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_buckets_refuse_and_say_how_long_to_wait() {
        let limiter = RateLimiter::new(None);
        let limits = RateLimits { requests_per_second: Some(2.0), burst: Some(3.0), tokens_per_minute: Some(600.0) };
        for _ in 0..3 {
            assert!(matches!(limiter.admit("k", &limits, 10).await, Decision::Allowed(_)));
        }
        let Decision::Refused { bucket, retry_after, states, message } = limiter.admit("k", &limits, 10).await else {
            panic!("the fourth request within the burst is refused")
        };
        assert_eq!(bucket, "requests");
        assert!(message.starts_with("API key 'k' is over its requests limit; retry in 0."), "{message}");
        assert!(
            retry_after > Duration::from_millis(400) && retry_after <= Duration::from_millis(500),
            "{retry_after:?}"
        );
        assert_eq!(states[1].name, "tokens");
        // 570 after three requests of 10 (plus what refilled meanwhile): a refused request takes nothing.
        assert!((states[1].remaining - 570.0).abs() < 1.0, "{}", states[1].remaining);
        // Another key has its own buckets.
        assert!(matches!(limiter.admit("other", &limits, 10).await, Decision::Allowed(_)));
        // Tokens: 600 per minute; a 700-token request passes only on a full bucket.
        let tokens = RateLimits { tokens_per_minute: Some(600.0), ..Default::default() };
        assert!(matches!(limiter.admit("t", &tokens, 700).await, Decision::Allowed(_)));
        let Decision::Refused { bucket, retry_after, .. } = limiter.admit("t", &tokens, 1).await else {
            panic!("in debt")
        };
        assert_eq!(bucket, "tokens");
        assert!(retry_after > Duration::from_secs(9), "{retry_after:?}");
    }

    #[test]
    fn bad_limits_are_refused() {
        assert!(RateLimits { requests_per_second: Some(0.0), ..Default::default() }.check().is_err());
        assert!(RateLimits { tokens_per_minute: Some(f64::NAN), ..Default::default() }.check().is_err());
        assert!(RateLimits::default().check().is_ok() && RateLimits::default().is_empty());
    }
}
