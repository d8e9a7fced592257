//! Caches in front of the models: embeddings (per text, byte-bounded, with single-flight), exact responses
//! of generation models (whole request, deterministic requests only), semantic responses (similar
//! conversations, opt-in per model), and an optional shared second level in Redis for the first two.
//!
//! Requests choose how they use a cache with [`CacheMode`] (body field `cache` or header `x-ferroserve-cache`).
//!
//! [`Caches`] is the one facade the engine holds: lookups and fills (local, then shared), usage,
//! invalidation and the hit, miss and eviction metrics of every cache.

pub mod codec;
pub mod embedding;
pub mod key;
mod recorder;
pub mod response;
pub mod semantic;
pub mod shared;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use serde::Deserialize;

pub use embedding::{CachedVector, EmbeddingCache, LeadGuard, Lookup};
pub use recorder::Recorder;
pub use response::{Asked, CachedResponse, CachedToken, ResponseCache};
pub use semantic::{SemanticCache, SemanticHit, SemanticKey};
use shared::{Kind, SharedCache};

/// Counts an entry that left a moka cache for another reason than being replaced.
fn count_eviction(cache: &'static str, cause: RemovalCause) {
    let cause = match cause {
        RemovalCause::Expired => "expired",
        RemovalCause::Size => "size",
        RemovalCause::Explicit => "invalidated",
        RemovalCause::Replaced => return,
    };
    metrics::counter!("ferroserve_cache_evictions_total", "cache" => cache, "cause" => cause).increment(1);
}

/// Counts `n` hits or misses (`metric`) of one cache for one model.
pub fn count(metric: &'static str, cache: &'static str, model: &str, n: u64) {
    if n > 0 {
        metrics::counter!(metric, "cache" => cache, "model" => model.to_string()).increment(n);
    }
}

/// Bytes and entries of a cache.
pub type Usage = (u64, u64);

/// What every cache holds now.
pub struct CacheUsage {
    pub embedding: Option<Usage>,
    pub response: Option<Usage>,
    /// Per generation model with a semantic cache.
    pub semantic: BTreeMap<String, Usage>,
}

/// What an invalidation dropped.
pub struct Invalidated {
    pub what: String,
    /// Keys deleted from the shared cache, or why that failed; `None` without one.
    pub shared: Option<Result<u64, String>>,
}

/// The Redis cache and the TTLs of what goes into it.
struct Shared {
    cache: Arc<SharedCache>,
    embedding_ttl: Duration,
    response_ttl: Duration,
}

/// Every cache of the server, behind one facade.
pub struct Caches {
    /// `None` when `cache.embedding_mb` is 0.
    embedding: Option<EmbeddingCache>,
    /// `None` when `cache.response_mb` is 0.
    response: Option<Arc<ResponseCache>>,
    /// Semantic response caches of the generation models that configure one.
    semantic: HashMap<String, Arc<SemanticCache>>,
    /// The shared second level (Redis) of the embedding and exact response caches.
    shared: Option<Shared>,
}

impl Caches {
    /// The caches `config` asks for, and a semantic cache for each `(model, settings)`. Fails on a bad
    /// `redis_url` (Redis itself is reached lazily).
    pub fn new<'a>(
        config: &CacheConfig,
        semantic: impl IntoIterator<Item = (&'a str, &'a SemanticCacheConfig)>,
    ) -> anyhow::Result<Self> {
        let response_ttl = Duration::from_secs(config.response_ttl_secs);
        let embedding_ttl = Duration::from_secs(config.embedding_ttl_secs);
        let shared = match &config.redis_url {
            Some(url) => Some(Shared {
                cache: Arc::new(SharedCache::new(
                    url,
                    &config.redis_prefix,
                    Duration::from_millis(config.redis_timeout_ms.max(1)),
                    Duration::from_secs(config.redis_retry_secs),
                )?),
                embedding_ttl,
                response_ttl,
            }),
            None => None,
        };
        Ok(Caches {
            embedding: (config.embedding_mb > 0)
                .then(|| EmbeddingCache::new(config.embedding_mb * 1024 * 1024, embedding_ttl)),
            response: (config.response_mb > 0)
                .then(|| Arc::new(ResponseCache::new(config.response_mb * 1024 * 1024, response_ttl))),
            semantic: semantic
                .into_iter()
                .map(|(model, s)| {
                    (model.to_string(), Arc::new(SemanticCache::new(s.threshold, s.max_entries, response_ttl)))
                })
                .collect(),
            shared,
        })
    }

    /// The Redis of the shared cache, when configured (rate limits share its connection and breaker).
    pub fn redis(&self) -> Option<Arc<SharedCache>> {
        self.shared.as_ref().map(|s| s.cache.clone())
    }

    /// Bytes and entries of every cache (also exported as gauges).
    pub fn usage(&self) -> CacheUsage {
        let gauges = |usage: Usage, cache: &'static str, model: Option<&str>| {
            let mut labels = vec![("cache", cache.to_string())];
            labels.extend(model.map(|m| ("model", m.to_string())));
            metrics::gauge!("ferroserve_cache_bytes", &labels).set(usage.0 as f64);
            metrics::gauge!("ferroserve_cache_entries", &labels).set(usage.1 as f64);
            usage
        };
        CacheUsage {
            embedding: self.embedding.as_ref().map(|c| gauges(c.usage(), "embedding", None)),
            response: self.response.as_ref().map(|c| gauges(c.usage(), "response", None)),
            semantic: self
                .semantic
                .iter()
                .map(|(model, c)| (model.clone(), gauges(c.usage(), "semantic", Some(model))))
                .collect(),
        }
    }

    /// Drops cached entries: one text's embedding (`input` with its truncation, needs `model`), everything
    /// of one model (its embeddings, exact and semantic responses), or everything; locally and in the
    /// shared cache.
    pub async fn invalidate(&self, model: Option<&str>, input: Option<(&str, bool)>) -> Result<Invalidated, String> {
        let (what, entry) = match (model, input) {
            (Some(m), Some((text, truncate))) => {
                let key = EmbeddingCache::key(m, truncate, text);
                if let Some(cache) = &self.embedding {
                    cache.invalidate(key);
                }
                (format!("embedding entry of model {m:?}"), Some(key))
            }
            (None, Some(_)) => return Err("an input needs its model".into()),
            (model, None) => {
                if let Some(cache) = &self.embedding {
                    model.map_or_else(|| cache.invalidate_all(), |m| cache.invalidate_model(m));
                }
                if let Some(cache) = &self.response {
                    model.map_or_else(|| cache.invalidate_all(), |m| cache.invalidate_model(m));
                }
                for (name, cache) in &self.semantic {
                    if model.is_none_or(|m| m == name) {
                        cache.invalidate_all();
                    }
                }
                (model.map_or("all entries".into(), |m| format!("entries of model {m:?}")), None)
            }
        };
        let shared = match &self.shared {
            None => None,
            Some(s) => Some(s.cache.invalidate(entry.map(|_| Kind::Embedding), model, entry).await),
        };
        Ok(Invalidated { what, shared })
    }

    /// The embedding cache, unless it is off or `mode` skips it.
    pub fn embeddings(&self, mode: CacheMode) -> Option<&EmbeddingCache> {
        self.embedding.as_ref().filter(|_| mode != CacheMode::Skip)
    }

    /// Looks `leads` (inputs this request must compute, with their single-flight guards) up in the shared
    /// cache: found vectors fill the local cache (waking waiters) and `raw`. Returns the leads still to
    /// compute and how many were found. A vector of another size than `dimensions` (a changed model under
    /// the same name) is not taken.
    pub async fn shared_vectors(
        &self,
        model: &Arc<str>,
        dimensions: usize,
        leads: Vec<(usize, Option<LeadGuard>)>,
        raw: &mut [Option<Arc<CachedVector>>],
    ) -> (Vec<(usize, Option<LeadGuard>)>, usize) {
        let (Some(local), Some(shared)) = (&self.embedding, &self.shared) else { return (leads, 0) };
        if leads.is_empty() {
            return (leads, 0);
        }
        let keys: Vec<String> = leads
            .iter()
            .map(|(_, g)| g.as_ref().map_or_else(String::new, |g| shared.cache.key(Kind::Embedding, model, g.key())))
            .collect();
        let found = shared.cache.get_many(Kind::Embedding, model, &keys).await;
        let mut left = Vec::with_capacity(leads.len());
        let mut hits = 0;
        for ((i, guard), bytes) in leads.into_iter().zip(found) {
            let value =
                bytes.and_then(|b| codec::decode_vector(&b, model.clone())).filter(|v| v.vector.len() == dimensions);
            match (value, guard) {
                (Some(value), Some(guard)) => {
                    let value = Arc::new(value);
                    local.complete(guard, value.clone(), true);
                    raw[i] = Some(value);
                    hits += 1;
                }
                (_, guard) => left.push((i, guard)),
            }
        }
        (left, hits)
    }

    /// Keeps computed vectors: completes each lead's single-flight slot (stored when `write`), and writes
    /// them to the shared cache in the background.
    pub fn fill_vectors(&self, model: &str, computed: Vec<(LeadGuard, Arc<CachedVector>)>, write: bool) {
        let Some(local) = &self.embedding else { return };
        let shared = self.shared.as_ref().filter(|_| write);
        let mut to_share = Vec::new();
        for (guard, value) in computed {
            if let Some(shared) = shared {
                to_share.push((shared.cache.key(Kind::Embedding, model, guard.key()), codec::encode_vector(&value)));
            }
            local.complete(guard, value, write);
        }
        if let Some(shared) = shared {
            shared.cache.put_many(Kind::Embedding, model, to_share, shared.embedding_ttl);
        }
    }

    /// The exact-cache key of a generation request, when the response cache is on, `mode` uses it and the
    /// request is deterministic.
    pub fn response_key(&self, mode: CacheMode, model: &str, asked: &Asked) -> Option<u128> {
        self.response.as_ref().filter(|_| mode != CacheMode::Skip)?;
        ResponseCache::key(model, asked)
    }

    /// The exact response under `key`: local, else shared (then kept locally too). Counts the hit or miss.
    pub async fn response(&self, model: &str, key: u128) -> Option<Arc<CachedResponse>> {
        let local = self.response.as_ref()?;
        let hit = match local.get(key) {
            Some(hit) => Some(hit),
            None => self.shared_response(local, model, key).await,
        };
        let metric = if hit.is_some() { "ferroserve_cache_hits_total" } else { "ferroserve_cache_misses_total" };
        count(metric, "response", model, 1);
        hit
    }

    async fn shared_response(&self, local: &ResponseCache, model: &str, key: u128) -> Option<Arc<CachedResponse>> {
        let shared = self.shared.as_ref()?;
        let keys = [shared.cache.key(Kind::Response, model, key)];
        let found = shared.cache.get_many(Kind::Response, model, &keys).await.pop().flatten()?;
        let hit = Arc::new(codec::decode_response(&found, model.into())?);
        local.insert(key, hit.clone());
        Some(hit)
    }

    /// The semantic cache of `model`, if it has one.
    pub fn semantic(&self, model: &str) -> Option<&Arc<SemanticCache>> {
        self.semantic.get(model)
    }

    /// What keeps a generation's answer once it finishes: the exact cache under `exact` (local and shared)
    /// and the semantic cache under `semantic`; `None` when there is nowhere to keep it.
    pub fn recorder(
        &self,
        model: &str,
        exact: Option<u128>,
        semantic: Option<(Arc<SemanticCache>, SemanticKey)>,
    ) -> Option<Recorder> {
        let exact = self.response.as_ref().zip(exact);
        if exact.is_none() && semantic.is_none() {
            return None;
        }
        let shared = self
            .shared
            .as_ref()
            .zip(exact)
            .map(|(s, (_, key))| (s.cache.clone(), s.cache.key(Kind::Response, model, key), s.response_ttl));
        Some(Recorder { exact: exact.map(|(c, k)| (c.clone(), k)), shared, semantic, model: model.into() })
    }
}

/// How one request uses the caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Read, and write what was computed.
    #[default]
    Default,
    /// Neither read nor write.
    Skip,
    /// Do not read; compute and overwrite.
    Refresh,
    /// Read only; a miss is an error (404) and nothing is computed.
    Only,
}

impl CacheMode {
    pub fn reads(self) -> bool {
        matches!(self, CacheMode::Default | CacheMode::Only)
    }

    pub fn writes(self) -> bool {
        matches!(self, CacheMode::Default | CacheMode::Refresh)
    }
}

impl std::str::FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "default" => Ok(CacheMode::Default),
            "skip" => Ok(CacheMode::Skip),
            "refresh" => Ok(CacheMode::Refresh),
            "only" => Ok(CacheMode::Only),
            other => Err(format!("cache must be one of default, skip, refresh, only; got {other:?}")),
        }
    }
}

/// Cache settings (the `[cache]` table of the server config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes of embedding vectors kept, MiB; 0 turns the embedding cache off.
    pub embedding_mb: u64,
    /// Seconds an embedding stays cached after it was computed.
    pub embedding_ttl_secs: u64,
    /// Bytes of generated responses kept, MiB; 0 turns the response cache off.
    pub response_mb: u64,
    /// Seconds a response stays cached.
    pub response_ttl_secs: u64,
    /// Shared second-level cache of embeddings and exact responses (`redis://host:port/db`); none when absent.
    pub redis_url: Option<String>,
    /// First segment of every Redis key (separates deployments sharing one Redis).
    pub redis_prefix: String,
    /// Longest wait for Redis on a request, ms; past it the request goes on without the shared cache.
    pub redis_timeout_ms: u64,
    /// Seconds Redis is left alone after failing repeatedly (circuit breaker).
    pub redis_retry_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            embedding_mb: 256,
            embedding_ttl_secs: 3600,
            response_mb: 64,
            response_ttl_secs: 3600,
            redis_url: None,
            redis_prefix: "ferroserve".into(),
            redis_timeout_ms: 50,
            redis_retry_secs: 5,
        }
    }
}

/// The semantic response cache of one generation model: a request whose conversation is similar enough to one
/// already answered (same parameters) gets that answer without generating.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticCacheConfig {
    /// The embedding model (of the same repository) that embeds conversations.
    pub embedding_model: String,
    /// Least cosine similarity for a hit, both of the whole conversation and of its last message.
    #[serde(default = "default_semantic_threshold")]
    pub threshold: f32,
    /// Most answers kept (oldest go first); they also expire after `cache.response_ttl_secs`.
    #[serde(default = "default_semantic_entries")]
    pub max_entries: usize,
}

fn default_semantic_threshold() -> f32 {
    0.95
}

fn default_semantic_entries() -> usize {
    4096
}
