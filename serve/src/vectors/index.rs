//! The HNSW graph of a collection (hnsw_rs), keyed by slot number. hnsw_rs wants non-negative distances, so
//! the graph orders by a non-negative transform of each score (`1 − dot` for unit vectors, squared L2, and a
//! softplus of the negated dot product for `Dot`); callers re-score what it returns exactly.
//!
//! hnsw_rs has no delete: a replaced or deleted point stays in the graph and searches skip it (the slot
//! filter); the collection rebuilds the graph when such tombstones pile up.

use hnsw_rs::prelude::{Distance as HnswDistance, FilterT, Hnsw};

use super::distance::{Distance, dot, l2_squared};

const MAX_LAYERS: usize = 16;

#[derive(Clone, Copy, Default)]
struct UnitDot;
impl HnswDistance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

#[derive(Clone, Copy, Default)]
struct SoftplusNegDot;
impl HnswDistance<f32> for SoftplusNegDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let x = -dot(a, b);
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }
}

#[derive(Clone, Copy, Default)]
struct SquaredL2;
impl HnswDistance<f32> for SquaredL2 {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        l2_squared(a, b)
    }
}

enum Graph {
    Unit(Hnsw<'static, f32, UnitDot>),
    Dot(Hnsw<'static, f32, SoftplusNegDot>),
    L2(Hnsw<'static, f32, SquaredL2>),
}

/// One HNSW graph.
pub struct Index {
    graph: Graph,
}

macro_rules! each {
    ($graph:expr, $g:ident => $body:expr) => {
        match $graph {
            Graph::Unit($g) => $body,
            Graph::Dot($g) => $body,
            Graph::L2($g) => $body,
        }
    };
}

impl Index {
    /// An empty graph for about `capacity` points with `m` links per node and `ef_construct` breadth.
    pub fn new(distance: Distance, m: usize, ef_construct: usize, capacity: usize) -> Self {
        let capacity = capacity.max(1024);
        let graph = match distance {
            Distance::Cosine => Graph::Unit(Hnsw::new(m, capacity, MAX_LAYERS, ef_construct, UnitDot)),
            Distance::Dot => Graph::Dot(Hnsw::new(m, capacity, MAX_LAYERS, ef_construct, SoftplusNegDot)),
            Distance::Euclid => Graph::L2(Hnsw::new(m, capacity, MAX_LAYERS, ef_construct, SquaredL2)),
        };
        Index { graph }
    }

    /// Adds the (prepared) vector of `slot`.
    pub fn insert(&self, vector: &[f32], slot: usize) {
        each!(&self.graph, g => g.insert_slice((vector, slot)))
    }

    /// Slots of up to `k` nearest points among those `keep` accepts, nearest first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, keep: &dyn Fn(&usize) -> bool) -> Vec<usize> {
        let filter: &dyn FilterT = &keep;
        let found = each!(&self.graph, g => g.search_filter(query, k, ef.max(k), Some(filter)));
        found.into_iter().map(|n| n.d_id).collect()
    }

    /// Points in the graph, tombstones included.
    pub fn len(&self) -> usize {
        each!(&self.graph, g => g.get_nb_point())
    }
}
