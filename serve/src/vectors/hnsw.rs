//! A hierarchical navigable small-world graph (Malkov & Yashunin), written for this server: vectors in one
//! contiguous array, layer 0's neighbour lists in one flat array (`2·M` slots per node), upper layers per
//! node, a visited list stamped with an epoch and reused per thread (no clearing, no allocation per query),
//! and the neighbour-selection heuristic of the paper (as hnswlib has it). Distances are "smaller is closer"
//! and may be negative (`Dot`).
//!
//! A search may be given a filter: rejected nodes are still walked through (they connect the graph) but never
//! returned, as in hnswlib and Qdrant. One writer at a time (the caller's lock); any number of readers.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Distance between two vectors of the graph's dimension; smaller is closer.
pub type DistanceFn<T> = fn(&[T], &[T]) -> f32;

#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// A graph over vectors of `T` (`f32`, or `i8` codes of a quantized collection).
pub struct Hnsw<T> {
    dim: usize,
    m: usize,
    ef_construct: usize,
    distance: DistanceFn<T>,
    /// Node `i`'s vector at `i * dim`.
    vectors: Vec<T>,
    /// Layer 0: node `i`'s neighbours at `i * 2m`, `count0[i]` of them.
    links0: Vec<u32>,
    count0: Vec<u8>,
    /// Layers 1..=level of each node: `upper[i][l - 1]`.
    upper: Vec<Vec<Vec<u32>>>,
    entry: Option<(u32, usize)>,
    /// Level generator state (xorshift), deterministic per graph.
    seed: u64,
}

thread_local! {
    /// Per-thread visited stamps: a node is visited when its stamp equals the current epoch.
    static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
}

impl<T: Copy> Hnsw<T> {
    pub fn new(dim: usize, m: usize, ef_construct: usize, distance: DistanceFn<T>, capacity: usize) -> Self {
        let m = m.clamp(2, 127);
        Hnsw {
            dim,
            m,
            ef_construct: ef_construct.max(m),
            distance,
            vectors: Vec::with_capacity(capacity * dim),
            links0: Vec::with_capacity(capacity * 2 * m),
            count0: Vec::with_capacity(capacity),
            upper: Vec::with_capacity(capacity),
            entry: None,
            seed: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Nodes in the graph.
    pub fn len(&self) -> usize {
        self.count0.len()
    }

    /// Bytes held: vectors and links.
    pub fn bytes(&self) -> usize {
        self.vectors.len() * std::mem::size_of::<T>()
            + self.links0.len() * 4
            + self.count0.len()
            + self.upper.iter().map(|u| 24 + u.iter().map(|l| 24 + l.len() * 4).sum::<usize>()).sum::<usize>()
    }

    fn vector(&self, node: u32) -> &[T] {
        let at = node as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    fn neighbours(&self, node: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let at = node as usize * 2 * self.m;
            &self.links0[at..at + self.count0[node as usize] as usize]
        } else {
            &self.upper[node as usize][layer - 1]
        }
    }

    /// Asks the CPU to start loading `node`'s vector (the next neighbour, while this one is scored).
    #[inline(always)]
    fn prefetch(&self, node: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(v) = self.vectors.get(node as usize * self.dim) {
            // SAFETY: a prefetch is a hint and never faults; SSE is part of x86-64.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((v as *const T).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = node;
    }

    fn random_level(&mut self) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let uniform = ((self.seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let level = (-uniform.ln() / (self.m as f64).ln()).floor() as usize;
        level.min(16)
    }

    /// Adds `vector` as the next node (its id is the previous [`len`](Self::len)); returns the id.
    pub fn insert(&mut self, vector: &[T]) -> u32 {
        let node = self.len() as u32;
        let level = self.random_level();
        self.vectors.extend_from_slice(vector);
        self.links0.extend(std::iter::repeat_n(0, 2 * self.m));
        self.count0.push(0);
        self.upper.push(vec![Vec::new(); level]);
        let Some((mut entry, top)) = self.entry else {
            self.entry = Some((node, level));
            return node;
        };
        let mut entry_dist = (self.distance)(vector, self.vector(entry));
        for layer in (level + 1..=top).rev() {
            (entry, entry_dist) = self.greedy(vector, entry, entry_dist, layer);
        }
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(vector, &[Scored(entry_dist, entry)], self.ef_construct, layer, None);
            let max = if layer == 0 { 2 * self.m } else { self.m };
            let chosen = self.select(&found, self.m);
            self.set_links(node, layer, &chosen);
            for &Scored(_, other) in &chosen {
                self.link_back(other, node, layer, max);
            }
            if let Some(&Scored(d, n)) = found.first() {
                (entry, entry_dist) = (n, d);
            }
        }
        if level > top {
            self.entry = Some((node, level));
        }
        node
    }

    fn set_links(&mut self, node: u32, layer: usize, chosen: &[Scored]) {
        if layer == 0 {
            let at = node as usize * 2 * self.m;
            for (i, s) in chosen.iter().enumerate() {
                self.links0[at + i] = s.1;
            }
            self.count0[node as usize] = chosen.len() as u8;
        } else {
            self.upper[node as usize][layer - 1] = chosen.iter().map(|s| s.1).collect();
        }
    }

    /// Adds `node` to `other`'s list on `layer`, pruning it back to `max` with the heuristic when full.
    fn link_back(&mut self, other: u32, node: u32, layer: usize, max: usize) {
        let current = self.neighbours(other, layer);
        if current.len() < max {
            if layer == 0 {
                let at = other as usize * 2 * self.m + current.len();
                self.links0[at] = node;
                self.count0[other as usize] += 1;
            } else {
                self.upper[other as usize][layer - 1].push(node);
            }
            return;
        }
        let base = self.vector(other);
        let mut candidates: Vec<Scored> = current
            .iter()
            .chain(std::iter::once(&node))
            .map(|&n| Scored((self.distance)(base, self.vector(n)), n))
            .collect();
        candidates.sort_unstable();
        let chosen = self.select(&candidates, max);
        self.set_links(other, layer, &chosen);
    }

    /// The heuristic: take candidates nearest first, keeping one only if it is closer to the base than to
    /// every neighbour kept so far (spreads links over directions); fill up with the nearest left over.
    fn select(&self, sorted: &[Scored], max: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(max);
        let mut skipped = Vec::new();
        for &c in sorted {
            if kept.len() == max {
                break;
            }
            let v = self.vector(c.1);
            if kept.iter().all(|k| (self.distance)(v, self.vector(k.1)) > c.0) {
                kept.push(c);
            } else {
                skipped.push(c);
            }
        }
        for c in skipped {
            if kept.len() == max {
                break;
            }
            kept.push(c);
        }
        kept
    }

    fn greedy(&self, query: &[T], mut node: u32, mut dist: f32, layer: usize) -> (u32, f32) {
        loop {
            let mut moved = false;
            for &n in self.neighbours(node, layer) {
                let d = (self.distance)(query, self.vector(n));
                if d < dist {
                    (node, dist, moved) = (n, d, true);
                }
            }
            if !moved {
                return (node, dist);
            }
        }
    }

    /// Beam search of width `ef` on `layer` from `entries`; the nearest first. With `keep`, only nodes it
    /// accepts are returned (all are walked).
    fn search_layer(
        &self,
        query: &[T],
        entries: &[Scored],
        ef: usize,
        layer: usize,
        keep: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Scored> {
        VISITED.with(|cell| {
            let (stamps, epoch) = &mut *cell.borrow_mut();
            if stamps.len() < self.len() {
                stamps.resize(self.len(), 0);
            }
            *epoch = epoch.wrapping_add(1);
            if *epoch == 0 {
                stamps.iter_mut().for_each(|s| *s = 0);
                *epoch = 1;
            }
            let epoch = *epoch;
            let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
            for &e in entries {
                stamps[e.1 as usize] = epoch;
                candidates.push(Reverse(e));
                if keep.is_none_or(|k| k(e.1)) {
                    results.push(e);
                }
            }
            while let Some(Reverse(c)) = candidates.pop() {
                if results.len() >= ef && results.peek().is_some_and(|worst| c.0 > worst.0) {
                    break;
                }
                let neighbours = self.neighbours(c.1, layer);
                for (i, &n) in neighbours.iter().enumerate() {
                    if let Some(&next) = neighbours.get(i + 1) {
                        self.prefetch(next);
                    }
                    let seen = &mut stamps[n as usize];
                    if *seen == epoch {
                        continue;
                    }
                    *seen = epoch;
                    let d = (self.distance)(query, self.vector(n));
                    if results.len() < ef || results.peek().is_some_and(|worst| d < worst.0) {
                        candidates.push(Reverse(Scored(d, n)));
                        if keep.is_none_or(|k| k(n)) {
                            results.push(Scored(d, n));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            results.into_sorted_vec()
        })
    }

    /// Up to `k` nodes nearest to `query` that `keep` accepts, nearest first, with their distances.
    pub fn search(&self, query: &[T], k: usize, ef: usize, keep: Option<&dyn Fn(u32) -> bool>) -> Vec<(u32, f32)> {
        let Some((mut entry, top)) = self.entry else { return Vec::new() };
        let mut dist = (self.distance)(query, self.vector(entry));
        for layer in (1..=top).rev() {
            (entry, dist) = self.greedy(query, entry, dist, layer);
        }
        let mut found = self.search_layer(query, &[Scored(dist, entry)], ef.max(k), 0, keep);
        found.truncate(k);
        found.into_iter().map(|s| (s.1, s.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn finds_the_exact_neighbours_of_a_small_set_and_high_recall_on_a_large_one() {
        let mut x = 1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f32 / 5000.0 - 1.0
        };
        let points: Vec<Vec<f32>> = (0..3000).map(|_| (0..16).map(|_| next()).collect()).collect();
        let mut g = Hnsw::new(16, 16, 100, l2, 0);
        for p in &points {
            g.insert(p);
        }
        assert_eq!(g.len(), 3000);
        let (mut hit, mut total) = (0, 0);
        for q in points.iter().step_by(30) {
            let mut exact: Vec<(usize, f32)> = points.iter().enumerate().map(|(i, p)| (i, l2(q, p))).collect();
            exact.sort_by(|a, b| a.1.total_cmp(&b.1));
            let want: Vec<u32> = exact.iter().take(10).map(|e| e.0 as u32).collect();
            let got: Vec<u32> = g.search(q, 10, 64, None).into_iter().map(|r| r.0).collect();
            assert_eq!(got[0], want[0], "a stored point finds itself");
            hit += got.iter().filter(|n| want.contains(n)).count();
            total += 10;
            // A filter: only even nodes come back.
            let even = |n: u32| n.is_multiple_of(2);
            assert!(g.search(q, 10, 64, Some(&even)).iter().all(|r| r.0.is_multiple_of(2)));
        }
        assert!(hit as f64 / total as f64 >= 0.97, "recall {}", hit as f64 / total as f64);
        assert!(Hnsw::<f32>::new(4, 16, 100, l2, 0).search(&[0.0; 4], 5, 10, None).is_empty());
    }
}
