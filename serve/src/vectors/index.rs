//! The HNSW graph of a collection (`hnsw`), keyed by slot number: a graph node per inserted vector, mapped
//! to the collection slot it came from (a rebuilt graph holds only the live slots, so nodes and slots
//! differ). The graph holds its own copy of the vectors for locality: f32, or INT8 codes when the collection
//! is quantized (a quarter of the memory; scores are then approximate until re-scored).
//!
//! A replaced or deleted point stays in the graph and searches skip it (the slot filter); the collection
//! rebuilds the graph when such tombstones pile up.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::distance::{Distance, graph_distance};
use super::hnsw::Hnsw;
use super::quantize::{self, Quantizer};

enum Vectors {
    Full(Hnsw<f32>),
    Quantized(Hnsw<i8>, Quantizer),
}

struct Graph {
    vectors: Vectors,
    /// Collection slot of each node.
    slots: Vec<usize>,
}

/// One HNSW graph; inserts take its write lock one vector at a time, searches share its read lock.
pub struct Index {
    distance: Distance,
    graph: RwLock<Graph>,
    /// How many vectors the quantizer was fitted on (0 when not quantized).
    fitted_on: usize,
}

/// Shape of a graph.
#[derive(Debug, Clone, Copy)]
pub struct GraphParams {
    pub distance: Distance,
    pub dim: usize,
    pub m: usize,
    pub ef_construct: usize,
}

impl Index {
    /// An empty f32 graph with room for `capacity` vectors.
    pub fn new(p: GraphParams, capacity: usize) -> Self {
        let hnsw = Hnsw::new(p.dim, p.m, p.ef_construct, graph_distance(p.distance), capacity);
        Self::with(p.distance, Vectors::Full(hnsw), capacity, 0)
    }

    /// An empty INT8 graph whose quantizer is fitted on `sample` (the vectors about to be inserted).
    pub fn quantized(p: GraphParams, capacity: usize, quantile: f32, sample: &[&[f32]]) -> Self {
        let quantizer = Quantizer::fit(sample.iter().copied(), quantile);
        let hnsw = Hnsw::new(p.dim, p.m, p.ef_construct, quantize::graph_distance(p.distance), capacity);
        Self::with(p.distance, Vectors::Quantized(hnsw, quantizer), capacity, sample.len().max(1))
    }

    fn with(distance: Distance, vectors: Vectors, capacity: usize, fitted_on: usize) -> Self {
        Index { distance, graph: RwLock::new(Graph { vectors, slots: Vec::with_capacity(capacity) }), fitted_on }
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
        match &mut g.vectors {
            Vectors::Full(hnsw) => hnsw.insert(vector),
            Vectors::Quantized(hnsw, q) => hnsw.insert(&q.encode(vector)),
        };
        g.slots.push(slot);
    }

    /// Slots of up to `k` nearest points among those `keep` accepts (all, without it), nearest first, with
    /// their scores (as [`Distance::score`] gives them; approximate when quantized).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(&usize) -> bool>,
    ) -> Vec<(usize, f32)> {
        let g = self.read();
        let slots = &g.slots;
        let accept = keep.map(|keep| move |node: u32| slots.get(node as usize).is_some_and(keep));
        let accept = accept.as_ref().map(|f| f as &dyn Fn(u32) -> bool);
        let ef = ef.max(k);
        let found = match &g.vectors {
            Vectors::Full(hnsw) => hnsw
                .search(query, k, ef, accept)
                .into_iter()
                .map(|(node, d)| (node, self.distance.score_of_graph_distance(d)))
                .collect::<Vec<_>>(),
            Vectors::Quantized(hnsw, q) => hnsw
                .search(&q.encode(query), k, ef, accept)
                .into_iter()
                .map(|(node, d)| (node, q.score(self.distance, d)))
                .collect(),
        };
        found.into_iter().filter_map(|(node, score)| Some((*slots.get(node as usize)?, score))).collect()
    }

    /// For each of `n` slots, whether a node of the graph points to it.
    pub fn holds(&self, n: usize) -> Vec<bool> {
        let mut held = vec![false; n];
        for &slot in &self.read().slots {
            if let Some(h) = held.get_mut(slot) {
                *h = true;
            }
        }
        held
    }

    /// Points in the graph, tombstones included.
    pub fn len(&self) -> usize {
        self.read().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the graph holds (vectors, links, slot map).
    pub fn bytes(&self) -> usize {
        let g = self.read();
        let graph = match &g.vectors {
            Vectors::Full(hnsw) => hnsw.bytes(),
            Vectors::Quantized(hnsw, _) => hnsw.bytes(),
        };
        graph + g.slots.len() * std::mem::size_of::<usize>()
    }

    /// Whether the graph holds INT8 codes.
    pub fn is_quantized(&self) -> bool {
        self.fitted_on > 0
    }

    /// How many vectors the quantizer was fitted on (0 when not quantized).
    pub fn fitted_on(&self) -> usize {
        self.fitted_on
    }
}
