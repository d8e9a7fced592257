//! The embedding cache: one entry per (model, truncation, text) → the model's raw pooled vector and its
//! token count, weighted by bytes, with a byte capacity and a time to live (moka).
//!
//! Normalization and `dimensions` are applied to the cached raw vector by the same code as to a computed one,
//! so a cached answer is bit-for-bit the computed answer, and requests that differ only in those options
//! share entries. Concurrent misses of the same key are computed once: the first request leads, the others
//! wait for its result (single-flight); if the leader goes away without a result, a waiter computes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::key::KeyBuilder;

/// A cached raw (not normalized, not truncated) vector and the tokens its text had.
#[derive(Debug, PartialEq)]
pub struct CachedVector {
    pub vector: Vec<f32>,
    pub tokens: usize,
    /// The model that computed it (for invalidating one model's entries).
    pub model: Arc<str>,
}

type Slot = watch::Sender<Option<Arc<CachedVector>>>;

/// What a lookup found for one key.
pub enum Lookup {
    Hit(Arc<CachedVector>),
    /// Another request is computing it: wait on this.
    Wait(watch::Receiver<Option<Arc<CachedVector>>>),
    /// Compute it; publish with [`EmbeddingCache::complete`] (dropping the guard without completing lets
    /// waiters compute it themselves).
    Lead(LeadGuard),
}

/// The right (and duty) to compute one key.
pub struct LeadGuard {
    key: u128,
    slot: Option<Slot>,
    inflight: Arc<Mutex<HashMap<u128, Slot>>>,
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(&self.key);
        }
        // Dropping the sender without a value wakes the waiters with an error: they compute it themselves.
        self.slot.take();
    }
}

impl LeadGuard {
    pub fn key(&self) -> u128 {
        self.key
    }
}

pub struct EmbeddingCache {
    entries: moka::sync::Cache<u128, Arc<CachedVector>>,
    inflight: Arc<Mutex<HashMap<u128, Slot>>>,
}

impl EmbeddingCache {
    pub fn new(capacity_bytes: u64, ttl: Duration) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_, v: &Arc<CachedVector>| (v.vector.len() * 4 + 48).try_into().unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .support_invalidation_closures()
            .eviction_listener(|_, _, cause| super::count_eviction("embedding", cause))
            .build();
        EmbeddingCache { entries, inflight: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The key of one text for one model.
    pub fn key(model: &str, truncate: bool, text: &str) -> u128 {
        KeyBuilder::new("embedding").text(model).number(truncate as u64).text(text).finish()
    }

    /// A hit, a computation to wait for, or the duty to compute (single-flight).
    pub fn lookup(&self, key: u128, read: bool) -> Lookup {
        if read && let Some(v) = self.entries.get(&key) {
            return Lookup::Hit(v);
        }
        let mut map = match self.inflight.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(slot) = map.get(&key) {
            return Lookup::Wait(slot.subscribe());
        }
        let slot = watch::Sender::new(None);
        map.insert(key, slot.clone());
        Lookup::Lead(LeadGuard { key, slot: Some(slot), inflight: self.inflight.clone() })
    }

    /// Publishes a computed vector to waiters and (when `write`) to the cache.
    pub fn complete(&self, mut lead: LeadGuard, value: Arc<CachedVector>, write: bool) {
        if write {
            self.entries.insert(lead.key, value.clone());
        }
        if let Some(slot) = lead.slot.take() {
            slot.send_replace(Some(value));
        }
    }

    pub fn invalidate(&self, key: u128) {
        self.entries.invalidate(&key);
    }

    /// Drops every entry of `model`.
    pub fn invalidate_model(&self, model: &str) {
        let model: Arc<str> = model.into();
        if let Err(e) = self.entries.invalidate_entries_if(move |_, v| v.model == model) {
            tracing::warn!(error = %e, "cannot invalidate a model's cache entries");
        }
    }

    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }

    /// Bytes held (after pending maintenance) and entry count.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.weighted_size(), self.entries.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(n: usize) -> Arc<CachedVector> {
        Arc::new(CachedVector { vector: vec![1.0; n], tokens: 3, model: "m".into() })
    }

    #[test]
    fn single_flight_then_hit() {
        let cache = EmbeddingCache::new(1 << 20, Duration::from_secs(60));
        let key = EmbeddingCache::key("m", false, "hello");
        let Lookup::Lead(lead) = cache.lookup(key, true) else { panic!("first lookup leads") };
        let Lookup::Wait(mut waiter) = cache.lookup(key, true) else { panic!("second lookup waits") };
        cache.complete(lead, vector(4), true);
        assert_eq!(waiter.borrow_and_update().as_ref().map(|v| v.tokens), Some(3));
        assert!(matches!(cache.lookup(key, true), Lookup::Hit(_)));
        // refresh/skip do not read: they lead even when the entry exists.
        assert!(matches!(cache.lookup(key, false), Lookup::Lead(_)));
    }

    #[test]
    fn an_abandoned_lead_lets_waiters_compute() {
        let cache = EmbeddingCache::new(1 << 20, Duration::from_secs(60));
        let key = EmbeddingCache::key("m", false, "x");
        let Lookup::Lead(lead) = cache.lookup(key, true) else { panic!() };
        let Lookup::Wait(waiter) = cache.lookup(key, true) else { panic!() };
        drop(lead);
        assert!(waiter.has_changed().is_err(), "the waiter sees the leader gone");
        assert!(matches!(cache.lookup(key, true), Lookup::Lead(_)), "the next lookup leads");
    }

    #[test]
    fn byte_capacity_and_ttl_evict() {
        // Each entry weighs 4 * 1000 + 48 bytes: 10 fit in 41 KB, not 20.
        let cache = EmbeddingCache::new(41_000, Duration::from_secs(60));
        for i in 0..20u32 {
            let Lookup::Lead(lead) = cache.lookup(EmbeddingCache::key("m", false, &i.to_string()), true) else {
                panic!()
            };
            cache.complete(lead, vector(1000), true);
        }
        let (bytes, count) = cache.usage();
        assert!(bytes <= 41_000 && count <= 10, "{bytes} bytes, {count} entries");
        let short = EmbeddingCache::new(1 << 20, Duration::from_millis(50));
        let key = EmbeddingCache::key("m", false, "t");
        let Lookup::Lead(lead) = short.lookup(key, true) else { panic!() };
        short.complete(lead, vector(4), true);
        assert!(matches!(short.lookup(key, true), Lookup::Hit(_)));
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(short.lookup(key, true), Lookup::Lead(_)), "expired after its TTL");
    }

    #[test]
    fn every_key_field_matters() {
        let base = EmbeddingCache::key("m", false, "t");
        assert_ne!(base, EmbeddingCache::key("m:onnx", false, "t"));
        assert_ne!(base, EmbeddingCache::key("m", true, "t"));
        assert_ne!(base, EmbeddingCache::key("m", false, "t "));
    }
}
