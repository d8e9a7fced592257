//! The semantic response cache of one generation model: answers kept with the embeddings of their
//! conversation, found again by similarity in an HNSW graph (the vector collections' own).
//!
//! A hit needs three things: the same *group* (model, every sampling parameter, `max_tokens`, stop strings and
//! the conversation's shape — its roles in order), a cosine similarity at least `threshold` between the two
//! whole conversations, and the same between their last messages. The second vector keeps a long shared
//! system prompt from making every question look alike; the first keeps two chats that end with the same
//! question apart when what came before differs.
//!
//! HNSW has no delete: evicted and expired answers stay in the graph as tombstones that searches filter out,
//! and the graph is rebuilt from the live answers once tombstones outnumber them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::response::CachedResponse;
use crate::vectors::{Distance, GraphParams, Index as Graph};

/// Graph degree and construction/search breadth: small collections, recall matters more than build speed.
const MAX_CONNECTIONS: usize = 16;
const EF_CONSTRUCTION: usize = 100;
const EF_SEARCH: usize = 64;
/// Candidates checked per lookup (the nearest conversations in the group).
const CANDIDATES: usize = 8;

/// The embeddings that describe one request.
#[derive(Debug, Clone)]
pub struct SemanticKey {
    /// Everything that must be equal for a hit (see the module doc).
    pub group: u128,
    /// Embedding of the whole conversation (or prompt).
    pub context: Vec<f32>,
    /// Embedding of its last message.
    pub last: Vec<f32>,
}

/// A hit: the answer and how similar the two conversations were.
pub struct SemanticHit {
    pub response: Arc<CachedResponse>,
    pub similarity: f32,
}

struct Entry {
    key: SemanticKey,
    response: Arc<CachedResponse>,
    inserted: Instant,
}

struct Index {
    /// Made at the first answer (it fixes the embedding's dimensions).
    graph: Option<Graph>,
    /// Live answers by graph id; ids of the graph that are not here are tombstones.
    entries: HashMap<usize, Entry>,
    /// Ids in insertion order, for eviction of the oldest and expiry.
    order: VecDeque<usize>,
    next_id: usize,
}

impl Index {
    fn new() -> Self {
        Index { graph: None, entries: HashMap::new(), order: VecDeque::new(), next_id: 0 }
    }
}

pub struct SemanticCache {
    index: Mutex<Index>,
    threshold: f32,
    max_entries: usize,
    ttl: Duration,
}

impl SemanticCache {
    pub fn new(threshold: f32, max_entries: usize, ttl: Duration) -> Self {
        SemanticCache { index: Mutex::new(Index::new()), threshold, max_entries, ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most similar answer of the same group, if similar enough.
    pub fn get(&self, key: &SemanticKey) -> Option<SemanticHit> {
        let index = self.lock();
        let now = Instant::now();
        let live =
            |id: &usize| index.entries.get(id).is_some_and(|e| e.key.group == key.group && now - e.inserted < self.ttl);
        let found = index.graph.as_ref()?.search(&key.context, CANDIDATES, EF_SEARCH, Some(&live));
        found
            .iter()
            .filter_map(|(id, _)| {
                let entry = index.entries.get(id)?;
                let similarity = cosine(&key.context, &entry.key.context);
                let last = cosine(&key.last, &entry.key.last);
                (similarity >= self.threshold && last >= self.threshold).then_some((similarity.min(last), entry))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(similarity, e)| SemanticHit { response: e.response.clone(), similarity })
    }

    /// Keeps an answer; the oldest answers go when `max_entries` is reached.
    pub fn insert(&self, key: SemanticKey, response: Arc<CachedResponse>) {
        let mut index = self.lock();
        let now = Instant::now();
        while let Some(&oldest) = index.order.front() {
            let expired = index.entries.get(&oldest).is_none_or(|e| now - e.inserted >= self.ttl);
            if !expired && index.entries.len() < self.max_entries {
                break;
            }
            index.order.pop_front();
            if index.entries.remove(&oldest).is_some() {
                let cause = if expired { "expired" } else { "size" };
                metrics::counter!("ferroserve_cache_evictions_total", "cache" => "semantic", "cause" => cause)
                    .increment(1);
            }
        }
        let (dims, id) = (key.context.len(), index.next_id);
        index.graph.get_or_insert_with(|| new_graph(dims, self.max_entries)).insert(&key.context, id);
        index.next_id += 1;
        index.entries.insert(id, Entry { key, response, inserted: now });
        index.order.push_back(id);
        let tombstones = index.graph.as_ref().map_or(0, Graph::len) - index.entries.len();
        if tombstones > index.entries.len().max(64) {
            self.rebuild(&mut index);
        }
    }

    /// A new graph with only the live answers.
    fn rebuild(&self, index: &mut Index) {
        let mut fresh = Index::new();
        fresh.next_id = index.next_id;
        for id in index.order.drain(..) {
            if let Some(entry) = index.entries.remove(&id) {
                let dims = entry.key.context.len();
                fresh.graph.get_or_insert_with(|| new_graph(dims, self.max_entries)).insert(&entry.key.context, id);
                fresh.entries.insert(id, entry);
                fresh.order.push_back(id);
            }
        }
        *index = fresh;
    }

    pub fn invalidate_all(&self) {
        *self.lock() = Index::new();
    }

    /// Answers kept, and their approximate bytes (vectors and responses).
    pub fn usage(&self) -> (u64, u64) {
        let index = self.lock();
        let bytes = index
            .entries
            .values()
            .map(|e| (e.key.context.len() + e.key.last.len()) as u64 * 4 + u64::from(e.response.weight()))
            .sum();
        (bytes, index.entries.len() as u64)
    }
}

/// A graph for conversation embeddings (unit vectors, compared by cosine).
fn new_graph(dims: usize, capacity: usize) -> Graph {
    let params =
        GraphParams { distance: Distance::Cosine, dim: dims, m: MAX_CONNECTIONS, ef_construct: EF_CONSTRUCTION };
    Graph::new(params, capacity)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::{FinishReason, GenerationUsage};

    fn answer(text: &str) -> Arc<CachedResponse> {
        Arc::new(CachedResponse {
            tokens: Vec::new(),
            tail: text.to_string(),
            finish_reason: FinishReason::Stop,
            usage: GenerationUsage::default(),
            model: "m".into(),
        })
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn key(group: u128, context: &[f32], last: &[f32]) -> SemanticKey {
        SemanticKey { group, context: unit(context), last: unit(last) }
    }

    #[test]
    fn hits_need_group_context_and_last_message() {
        let cache = SemanticCache::new(0.95, 100, Duration::from_secs(60));
        cache.insert(key(1, &[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]), answer("a"));
        let near = key(1, &[1.0, 0.1, 0.0], &[0.0, 1.0, 0.1]);
        let hit = cache.get(&near).expect("similar conversation hits");
        assert_eq!(hit.response.tail, "a");
        assert!(hit.similarity >= 0.95 && hit.similarity <= 1.0);
        assert!(cache.get(&key(2, &[1.0, 0.1, 0.0], &[0.0, 1.0, 0.1])).is_none(), "other parameters");
        assert!(cache.get(&key(1, &[0.0, 0.0, 1.0], &[0.0, 1.0, 0.0])).is_none(), "other context");
        assert!(cache.get(&key(1, &[1.0, 0.0, 0.0], &[1.0, 0.0, 0.0])).is_none(), "other last message");
    }

    #[test]
    fn oldest_go_first_and_the_graph_is_rebuilt() {
        let cache = SemanticCache::new(0.99, 10, Duration::from_secs(60));
        // Random directions in 32 dimensions (a fixed LCG), as unrelated as real embeddings of unrelated texts.
        let point = |i: usize| {
            let mut state = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v: Vec<f32> = (0..32)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            key(7, &v, &v)
        };
        for i in 0..300 {
            cache.insert(point(i), answer(&i.to_string()));
        }
        assert_eq!(cache.usage().1, 10);
        assert!(cache.get(&point(0)).is_none(), "evicted");
        for i in 290..300 {
            assert_eq!(cache.get(&point(i)).expect("recent answers stay").response.tail, i.to_string());
        }
        assert!(
            cache.lock().graph.as_ref().map_or(0, Graph::len) <= 10 + 64 + 1,
            "tombstones were dropped by a rebuild"
        );
    }

    #[test]
    fn answers_expire() {
        let cache = SemanticCache::new(0.9, 10, Duration::from_millis(50));
        cache.insert(key(1, &[1.0, 0.0], &[1.0, 0.0]), answer("a"));
        assert!(cache.get(&key(1, &[1.0, 0.0], &[1.0, 0.0])).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get(&key(1, &[1.0, 0.0], &[1.0, 0.0])).is_none());
    }
}
