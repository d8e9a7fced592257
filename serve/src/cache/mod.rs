//! Caches in front of the models: embeddings (per text, byte-bounded, with single-flight), exact responses
//! of generation models (whole request, deterministic requests only), semantic responses (similar
//! conversations, opt-in per model), and an optional shared second level in Redis for the first two.
//!
//! Requests choose how they use a cache with [`CacheMode`] (body field `cache` or header `x-ferroserve-cache`).

pub mod codec;
pub mod embedding;
pub mod key;
pub mod response;
pub mod semantic;
pub mod shared;

use serde::Deserialize;

pub use embedding::{CachedVector, EmbeddingCache};
pub use response::{CachedResponse, CachedToken, ResponseCache};

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
