//! The HNSW graph of a collection (`hnsw`), keyed by slot number: a graph node per inserted vector, mapped
//! to the collection slot it came from (a rebuilt graph holds only the live slots, so nodes and slots
//! differ). Callers re-score what it returns exactly.
//!
//! A replaced or deleted point stays in the graph and searches skip it (the slot filter); the collection
//! rebuilds the graph when such tombstones pile up.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::distance::{Distance, graph_distance};
use super::hnsw::Hnsw;

struct Graph {
    hnsw: Hnsw,
    /// Collection slot of each node.
    slots: Vec<usize>,
}

/// One HNSW graph; inserts take its write lock one vector at a time, searches share its read lock.
pub struct Index {
    graph: RwLock<Graph>,
}

impl Index {
    /// An empty graph for vectors of `dim` with `m` links per node and `ef_construct` breadth.
    pub fn new(distance: Distance, dim: usize, m: usize, ef_construct: usize, capacity: usize) -> Self {
        let hnsw = Hnsw::new(dim, m, ef_construct, graph_distance(distance), capacity);
        Index { graph: RwLock::new(Graph { hnsw, slots: Vec::with_capacity(capacity) }) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the (prepared) vector of `slot`.
    pub fn insert(&self, vector: &[f32], slot: usize) {
        let mut g = self.write();
        g.hnsw.insert(vector);
        g.slots.push(slot);
    }

    /// Slots of up to `k` nearest points among those `keep` accepts, nearest first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, keep: &dyn Fn(&usize) -> bool) -> Vec<usize> {
        let g = self.read();
        let slots = &g.slots;
        let accept = |node: u32| slots.get(node as usize).is_some_and(keep);
        g.hnsw
            .search(query, k, ef.max(k), Some(&accept))
            .into_iter()
            .filter_map(|(node, _)| slots.get(node as usize).copied())
            .collect()
    }

    /// Points in the graph, tombstones included.
    pub fn len(&self) -> usize {
        self.read().hnsw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
