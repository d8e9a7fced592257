//! One collection in memory: points (vector, payload) in slots, the HNSW graph over the slots, and every
//! read and write. Durability (the write-ahead log and snapshots) wraps it in `storage`.
//!
//! A point replaced or deleted leaves a tombstone: its slot is emptied and searches skip it. When tombstones
//! pass `REBUILD_RATIO` of the graph, a new graph is built from the live points on a background thread while
//! reads and writes go on against the old one; points written meanwhile are added to the new graph before
//! it replaces the old.
//!
//! Search plans like Qdrant's: with a filter, the points it keeps are counted first; few of them (at most
//! `full_scan_threshold`) are scored exactly, more are searched in the graph with the filter applied during
//! traversal. Small collections are always scanned exactly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use super::VectorError;
use super::distance::Distance;
use super::filter::Filter;
use super::index::Index;
use super::point::{Payload, PointId};

/// Rebuild the graph when tombstones are more than this share of it.
const REBUILD_RATIO: f64 = 0.2;
/// ... and at least this many.
const REBUILD_MIN_TOMBSTONES: usize = 256;

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construct: usize,
    /// Filtered searches keeping at most this many points, and collections this small, are exact scans.
    pub full_scan_threshold: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construct: 100, full_scan_threshold: 2000 }
    }
}

/// What a collection is; fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// Dimensions of every vector.
    pub size: usize,
    pub distance: Distance,
    pub hnsw: HnswParams,
    /// The embedding model of this server that turns texts into this collection's vectors.
    pub embedding_model: Option<String>,
}

/// One point to write.
#[derive(Debug, Clone, PartialEq)]
pub struct PointInput {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Payload,
}

/// A point as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: PointId,
    pub payload: Option<Payload>,
    pub vector: Option<Vec<f32>>,
    /// Operation that last wrote it.
    pub version: u64,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub record: Record,
    pub score: f32,
}

/// A search request.
#[derive(Debug, Clone)]
pub struct Search {
    pub vector: Vec<f32>,
    pub limit: usize,
    pub offset: usize,
    pub filter: Option<Filter>,
    pub score_threshold: Option<f32>,
    /// Search breadth; `None`: the larger of 64 and `limit + offset`.
    pub ef: Option<usize>,
    /// Score every point (no graph): for checking recall.
    pub exact: bool,
    pub with_payload: bool,
    pub with_vector: bool,
}

struct Slot {
    id: PointId,
    vector: Vec<f32>,
    payload: Payload,
    version: u64,
}

struct State {
    /// By slot number (the graph's ids); `None` is a tombstone.
    slots: Vec<Option<Slot>>,
    ids: BTreeMap<PointId, usize>,
    index: Arc<Index>,
    /// Slots written while a rebuild runs, to add to the new graph.
    pending: Option<Vec<usize>>,
    /// Operations applied.
    version: u64,
}

/// Sizes for `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub points: usize,
    /// Points the current graph holds (live or not).
    pub graph_points: usize,
    /// Bytes of vectors and payloads held (approximate).
    pub bytes: usize,
}

pub struct Collection {
    pub name: String,
    pub config: CollectionConfig,
    state: Arc<RwLock<State>>,
    rebuilding: Arc<AtomicBool>,
}

impl Collection {
    pub fn new(name: &str, config: CollectionConfig) -> Self {
        let index = Index::new(config.distance, config.size, config.hnsw.m, config.hnsw.ef_construct, 0);
        let state =
            State { slots: Vec::new(), ids: BTreeMap::new(), index: Arc::new(index), pending: None, version: 0 };
        Collection {
            name: name.to_string(),
            config,
            state: Arc::new(RwLock::new(state)),
            rebuilding: Arc::new(AtomicBool::new(false)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a vector for this collection: its length and finite components; `at` names it in errors.
    pub fn check_vector(&self, vector: &[f32], at: &str) -> Result<(), VectorError> {
        if vector.len() != self.config.size {
            return Err(VectorError::Invalid(format!(
                "{at}: the vector has {} dimensions; collection {:?} takes {}",
                vector.len(),
                self.name,
                self.config.size
            )));
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(VectorError::Invalid(format!("{at}: component {i} of the vector is not a finite number")));
        }
        Ok(())
    }

    /// Checks every point's vector (see [`Collection::check_vector`]), naming the first bad point.
    pub fn check_points(&self, points: &[PointInput]) -> Result<(), VectorError> {
        points.iter().try_for_each(|p| self.check_vector(&p.vector, &format!("point {}", p.id)))
    }

    /// Writes points (all of them, or none when one is invalid); a point with an existing id replaces it.
    /// Readers are blocked only while the slots are taken; the graph insertions happen after.
    pub fn upsert(&self, points: Vec<PointInput>) -> Result<u64, VectorError> {
        self.check_points(&points)?;
        let mut added = Vec::with_capacity(points.len());
        let mut state = self.write();
        state.version += 1;
        let version = state.version;
        for p in points {
            let vector = self.config.distance.prepare(p.vector);
            if let Some(old) = state.ids.get(&p.id).copied() {
                state.slots[old] = None;
            }
            let slot = state.slots.len();
            if let Some(pending) = &mut state.pending {
                pending.push(slot);
            }
            added.push((slot, vector.clone()));
            state.slots.push(Some(Slot { id: p.id.clone(), vector, payload: p.payload, version }));
            state.ids.insert(p.id, slot);
        }
        let index = state.index.clone();
        drop(state);
        for (slot, vector) in &added {
            index.insert(vector, *slot);
        }
        self.maybe_rebuild();
        Ok(version)
    }

    /// The number of the last operation applied.
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Loads a snapshot's points (each with the operation that last wrote it) into this new collection, as
    /// of operation `version`.
    pub fn restore(&self, points: Vec<(PointInput, u64)>, version: u64) -> Result<(), VectorError> {
        let (points, versions): (Vec<PointInput>, Vec<u64>) = points.into_iter().unzip();
        self.upsert(points)?;
        let mut state = self.write();
        state.version = version;
        for (slot, v) in state.slots.iter_mut().zip(versions) {
            if let Some(s) = slot {
                s.version = v;
            }
        }
        Ok(())
    }

    /// Deletes points; ids that are not there are ignored. Returns the operation number.
    pub fn delete(&self, ids: &[PointId]) -> u64 {
        let mut state = self.write();
        state.version += 1;
        for id in ids {
            if let Some(slot) = state.ids.remove(id) {
                state.slots[slot] = None;
            }
        }
        let version = state.version;
        drop(state);
        self.maybe_rebuild();
        version
    }

    /// Sets payload keys of points (merging, or replacing the whole payload when `overwrite`).
    pub fn set_payload(&self, ids: &[PointId], payload: &Payload, overwrite: bool) -> u64 {
        let mut state = self.write();
        state.version += 1;
        let version = state.version;
        for id in ids {
            let Some(slot) = state.ids.get(id).copied() else { continue };
            if let Some(Some(s)) = state.slots.get_mut(slot) {
                if overwrite {
                    s.payload = payload.clone();
                } else {
                    s.payload.extend(payload.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                s.version = version;
            }
        }
        version
    }

    /// Ids of the points `filter` keeps, in id order.
    pub fn select(&self, filter: &Filter) -> Vec<PointId> {
        let state = self.read();
        state
            .ids
            .iter()
            .filter(|(id, slot)| live(&state, **slot).is_some_and(|s| filter.matches(id, &s.payload)))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The points with these ids that exist, in the order asked.
    pub fn get(&self, ids: &[PointId], with_payload: bool, with_vector: bool) -> Vec<Record> {
        let state = self.read();
        ids.iter()
            .filter_map(|id| state.ids.get(id).and_then(|&slot| live(&state, slot)))
            .map(|s| record(s, with_payload, with_vector))
            .collect()
    }

    /// Up to `limit` points from `offset` on (in id order) that pass `filter`, and the id to continue from.
    pub fn scroll(
        &self,
        offset: Option<&PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_payload: bool,
        with_vector: bool,
    ) -> (Vec<Record>, Option<PointId>) {
        let state = self.read();
        let start = offset.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        let mut out = Vec::new();
        for (id, &slot) in state.ids.range::<PointId, _>((start, std::ops::Bound::Unbounded)) {
            let Some(s) = live(&state, slot) else { continue };
            if filter.is_some_and(|f| !f.matches(id, &s.payload)) {
                continue;
            }
            if out.len() == limit {
                return (out, Some(id.clone()));
            }
            out.push(record(s, with_payload, with_vector));
        }
        (out, None)
    }

    /// Points that pass `filter` (all without one).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let state = self.read();
        match filter {
            None => state.ids.len(),
            Some(f) => state.slots.iter().flatten().filter(|s| f.matches(&s.id, &s.payload)).count(),
        }
    }

    pub fn counts(&self) -> Counts {
        let state = self.read();
        let bytes = state
            .slots
            .iter()
            .flatten()
            .map(|s| s.vector.len() * 4 + serde_json::to_string(&s.payload).map_or(0, |p| p.len()) + 64)
            .sum();
        Counts { points: state.ids.len(), graph_points: state.index.len(), bytes }
    }

    /// Every live point with the operation that last wrote it, for a snapshot, and the operation number
    /// the snapshot reflects.
    pub fn dump(&self) -> (Vec<(PointInput, u64)>, u64) {
        let state = self.read();
        let points = state
            .ids
            .values()
            .filter_map(|&slot| live(&state, slot))
            .map(|s| (PointInput { id: s.id.clone(), vector: s.vector.clone(), payload: s.payload.clone() }, s.version))
            .collect();
        (points, state.version)
    }

    /// The nearest points to `search.vector`.
    pub fn search(&self, search: &Search) -> Result<Vec<Scored>, VectorError> {
        self.check_vector(&search.vector, "query")?;
        let distance = self.config.distance;
        let query = distance.prepare(search.vector.clone());
        let wanted = search.limit + search.offset;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let state = self.read();
        let small = search.exact || state.ids.len() <= self.config.hnsw.full_scan_threshold;
        // The planner: score exactly when few points can be answers, else walk the graph (with the filter
        // applied during traversal).
        let slots = match &search.filter {
            None if small => state.ids.values().copied().collect(),
            None => {
                let ef = search.ef.unwrap_or(64).max(wanted);
                let is_live = |slot: &usize| state.slots.get(*slot).is_some_and(Option::is_some);
                state.index.search(&query, wanted, ef, &is_live)
            }
            Some(filter) => {
                // Slot order (a flat array) is faster to scan than id order; results are sorted by score.
                let kept: Vec<usize> = state
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.as_ref().is_some_and(|s| filter.matches(&s.id, &s.payload)))
                    .map(|(slot, _)| slot)
                    .collect();
                if small || kept.len() <= self.config.hnsw.full_scan_threshold {
                    kept
                } else {
                    let mut allowed = vec![false; state.slots.len()];
                    for slot in kept {
                        allowed[slot] = true;
                    }
                    let ef = search.ef.unwrap_or(64).max(wanted);
                    state.index.search(&query, wanted, ef, &|slot: &usize| allowed.get(*slot).copied().unwrap_or(false))
                }
            }
        };
        let mut scored: Vec<(f32, &Slot)> = slots
            .into_iter()
            .filter_map(|slot| live(&state, slot))
            .map(|s| (distance.score(&query, &s.vector), s))
            .filter(|(score, _)| search.score_threshold.is_none_or(|t| distance.passes(*score, t)))
            .collect();
        scored.sort_by(|a, b| {
            if distance.better(a.0, b.0) {
                std::cmp::Ordering::Less
            } else if distance.better(b.0, a.0) {
                std::cmp::Ordering::Greater
            } else {
                a.1.id.cmp(&b.1.id)
            }
        });
        Ok(scored
            .into_iter()
            .skip(search.offset)
            .take(search.limit)
            .map(|(score, s)| Scored { record: record(s, search.with_payload, search.with_vector), score })
            .collect())
    }

    /// Starts a background rebuild of the graph when tombstones pile up (one at a time).
    fn maybe_rebuild(&self) {
        let (tombstones, graph) = {
            let state = self.read();
            let graph = state.index.len();
            (graph.saturating_sub(state.ids.len()), graph.max(1))
        };
        if tombstones < REBUILD_MIN_TOMBSTONES || (tombstones as f64) < REBUILD_RATIO * graph as f64 {
            return;
        }
        if self.rebuilding.swap(true, Ordering::SeqCst) {
            return;
        }
        let (state, rebuilding, config, name) =
            (self.state.clone(), self.rebuilding.clone(), self.config.clone(), self.name.clone());
        let spawned = std::thread::Builder::new().name(format!("rebuild-{name}")).spawn(move || {
            rebuild(&state, &config);
            rebuilding.store(false, Ordering::SeqCst);
            tracing::info!(collection = %name, tombstones, "graph rebuilt without tombstones");
        });
        if spawned.is_err() {
            self.rebuilding.store(false, Ordering::SeqCst);
        }
    }

    /// Rebuilds the graph now, in this thread (tests, and after loading).
    pub fn rebuild_now(&self) {
        rebuild(&self.state, &self.config);
    }

    /// Whether a background rebuild is running.
    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding.load(Ordering::SeqCst)
    }
}

/// A new graph from the live points, built without holding the lock; points written meanwhile are added
/// before it replaces the old one.
fn rebuild(state: &RwLock<State>, config: &CollectionConfig) {
    let live: Vec<(usize, Vec<f32>)> = {
        let mut s = state.write().unwrap_or_else(|p| p.into_inner());
        s.pending = Some(Vec::new());
        s.ids.values().filter_map(|&slot| Some((slot, s.slots.get(slot)?.as_ref()?.vector.clone()))).collect()
    };
    let index = Index::new(config.distance, config.size, config.hnsw.m, config.hnsw.ef_construct, live.len());
    for (slot, vector) in &live {
        index.insert(vector, *slot);
    }
    let mut s = state.write().unwrap_or_else(|p| p.into_inner());
    for slot in s.pending.take().unwrap_or_default() {
        if let Some(Some(p)) = s.slots.get(slot) {
            index.insert(&p.vector, slot);
        }
    }
    s.index = Arc::new(index);
}

fn live(state: &State, slot: usize) -> Option<&Slot> {
    state.slots.get(slot)?.as_ref()
}

fn record(s: &Slot, with_payload: bool, with_vector: bool) -> Record {
    Record {
        id: s.id.clone(),
        payload: with_payload.then(|| s.payload.clone()),
        vector: with_vector.then(|| s.vector.clone()),
        version: s.version,
    }
}
