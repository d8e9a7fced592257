//! The shared second-level cache in Redis: replicas behind one load balancer see each other's embeddings and
//! responses. Values are compact binary ([`super::codec`]) with the same TTL as the local cache.
//!
//! Redis must never fail or stall a request: every read waits at most `redis_timeout_ms`, writes are sent in
//! the background, and a circuit breaker stops asking after [`FAILURES_TO_OPEN`] failures in a row for
//! `redis_retry_secs`, after which one request tries again. Failures are logged when the breaker opens and
//! closes (not per request) and counted in `ferroserve_cache_l2_errors_total`.
//!
//! Keys are `{prefix}:{kind}:{model}:{hash}`, so one model's entries can be found for invalidation.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

/// Consecutive failures that open the circuit.
pub const FAILURES_TO_OPEN: u32 = 3;
/// Longest an admin invalidation may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Which local cache an entry belongs to (a key segment and a metric label).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Embedding,
    Response,
    /// Not a cache: the rate-limit buckets, kept on the same Redis.
    RateLimit,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Embedding => "embedding",
            Kind::Response => "response",
            Kind::RateLimit => "ratelimit",
        }
    }
}

/// Counts failures in a row; open (skipping Redis) for a while after too many.
struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    retry_after: Duration,
}

impl Breaker {
    fn allows(&self) -> bool {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *open {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half-open: this caller tries; until it reports, others wait out another period.
                *open = Some(Instant::now() + self.retry_after);
                true
            }
            None => true,
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        if open.take().is_some() {
            tracing::info!("Redis cache reachable again; using it");
        }
    }

    fn failure(&self, error: &str) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= FAILURES_TO_OPEN {
            let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
            if open.is_none() {
                tracing::warn!(
                    error,
                    retry_secs = self.retry_after.as_secs_f32(),
                    "Redis cache failing; serving from the local cache only until it answers again"
                );
            }
            *open = Some(Instant::now() + self.retry_after);
        }
    }
}

pub struct SharedCache {
    client: redis::Client,
    /// The multiplexed connection (cheap to clone); `None` until connected or after a failure.
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    breaker: Breaker,
    prefix: String,
}

impl SharedCache {
    /// A client for `url` (`redis://host:port/db`); connects lazily, so a server that starts before Redis
    /// still serves.
    pub fn new(url: &str, prefix: &str, timeout: Duration, retry_after: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("cache.redis_url {url:?}: {e}"))?;
        Ok(SharedCache {
            client,
            connection: tokio::sync::Mutex::new(None),
            timeout,
            breaker: Breaker { failures: AtomicU32::new(0), open_until: Mutex::new(None), retry_after },
            prefix: prefix.to_string(),
        })
    }

    /// The Redis key of one entry.
    pub fn key(&self, kind: Kind, model: &str, hash: u128) -> String {
        format!("{}:{}:{model}:{hash:032x}", self.prefix, kind.as_str())
    }

    /// The Redis key of one rate-limit bucket of an API key.
    pub fn rate_key(&self, key: &str, bucket: &str) -> String {
        format!("{}:{}:{key}:{bucket}", self.prefix, Kind::RateLimit.as_str())
    }

    /// Runs a Lua script (EVALSHA, loading it when Redis does not have it) within the timeout, through the
    /// breaker; `None` on any failure.
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Option<T> {
        self.run(Kind::RateLimit, "", "eval", self.timeout, |mut c| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async(&mut c).await
        })
        .await
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one Redis operation within `limit`, through the breaker; `None` on any failure (counted).
    async fn run<T, F, Fut>(&self, kind: Kind, model: &str, op: &'static str, limit: Duration, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.allows() {
            metrics::counter!("ferroserve_cache_l2_errors_total", "cache" => kind.as_str(), "model" => model.to_string(), "op" => op, "reason" => "circuit_open")
                .increment(1);
            return None;
        }
        let result = tokio::time::timeout(limit, async {
            let c = self.connection().await?;
            f(c).await.map_err(|e| e.to_string())
        })
        .await;
        let error = match result {
            Ok(Ok(value)) => {
                self.breaker.success();
                return Some(value);
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {} ms", limit.as_millis()),
        };
        // Reconnect next time: the connection may be broken.
        *self.connection.lock().await = None;
        self.breaker.failure(&error);
        tracing::debug!(op, error, "Redis cache operation failed");
        metrics::counter!("ferroserve_cache_l2_errors_total", "cache" => kind.as_str(), "model" => model.to_string(), "op" => op, "reason" => "failed")
            .increment(1);
        None
    }

    /// The values of `keys` of one model (one `MGET`), `None` for absent ones; all `None` when Redis fails.
    pub async fn get_many(&self, kind: Kind, model: &str, keys: &[String]) -> Vec<Option<Vec<u8>>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let found: Option<Vec<Option<Vec<u8>>>> =
            self.run(kind, model, "get", self.timeout, |mut c| async move { c.mget(keys).await }).await;
        let found = found.filter(|f| f.len() == keys.len()).unwrap_or_else(|| vec![None; keys.len()]);
        let hits = found.iter().filter(|v| v.is_some()).count() as u64;
        let labels = [("cache", kind.as_str().to_string()), ("model", model.to_string())];
        metrics::counter!("ferroserve_cache_l2_hits_total", &labels).increment(hits);
        metrics::counter!("ferroserve_cache_l2_misses_total", &labels).increment(keys.len() as u64 - hits);
        found
    }

    /// Stores entries of one model with a TTL, in the background (one pipeline); the caller does not wait.
    pub fn put_many(
        self: &std::sync::Arc<Self>,
        kind: Kind,
        model: &str,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Duration,
    ) {
        if entries.is_empty() {
            return;
        }
        let this = self.clone();
        let secs = ttl.as_secs().max(1);
        let model = model.to_string();
        tokio::spawn(async move {
            this.run(kind, &model, "set", this.timeout, |mut c| async move {
                let mut pipe = redis::pipe();
                for (key, value) in entries {
                    pipe.set_ex(key, value, secs).ignore();
                }
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        });
    }

    /// Deletes one entry, or every entry of a model (`hash: None`), or every entry (`model: None`) of this
    /// prefix. Returns how many keys went.
    pub async fn invalidate(&self, kind: Option<Kind>, model: Option<&str>, hash: Option<u128>) -> Result<u64, String> {
        let pattern = match (kind, model, hash) {
            (Some(k), Some(m), Some(h)) => self.key(k, m, h),
            (k, m, _) => format!(
                "{}:{}:{}:*",
                glob_escape(&self.prefix),
                k.map_or("*".to_string(), |k| k.as_str().to_string()),
                m.map_or("*".to_string(), glob_escape)
            ),
        };
        let deleted = self
            .run(
                kind.unwrap_or(Kind::Response),
                model.unwrap_or("*"),
                "invalidate",
                ADMIN_TIMEOUT,
                |mut c| async move {
                    let mut keys: Vec<String> = Vec::new();
                    {
                        let mut iter = c.scan_match::<_, String>(&pattern).await?;
                        while let Some(key) = futures::StreamExt::next(&mut iter).await {
                            keys.push(key?);
                        }
                    }
                    let mut deleted = 0u64;
                    for chunk in keys.chunks(512) {
                        deleted += c.unlink::<_, u64>(chunk).await?;
                    }
                    Ok(deleted)
                },
            )
            .await;
        deleted.ok_or_else(|| "Redis did not answer; its entries expire with their TTL".to_string())
    }
}

/// Escapes Redis glob characters in a literal key part.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_failures_and_half_opens_later() {
        let b = Breaker {
            failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
            retry_after: Duration::from_millis(50),
        };
        for _ in 0..FAILURES_TO_OPEN - 1 {
            b.failure("x");
            assert!(b.allows());
        }
        b.failure("x");
        assert!(!b.allows(), "open");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allows(), "one try after the period");
        assert!(!b.allows(), "the others wait while it tries");
        b.success();
        assert!(b.allows());
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("m*[1]?"), "m\\*\\[1\\]\\?");
    }
}
