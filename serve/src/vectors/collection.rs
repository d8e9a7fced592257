//! One collection in memory: points (vector, payload) in slots, the HNSW graph over the slots, and every
//! read and write. Durability (the write-ahead log and snapshots) wraps it in `storage`.
//!
//! A point replaced or deleted leaves a tombstone: its slot is emptied and searches skip it. When tombstones
//! pass `REBUILD_RATIO` of the graph, a new graph is built from the live points on a background thread while
//! reads and writes go on against the old one; points written meanwhile are added to the new graph before
//! it replaces the old. Then the empty slots the new graph does not hold are free: new points take them
//! (and empty slots at the end are dropped), so a collection that is updated forever stays the size of its
//! live points plus the tombstones of one rebuild period. Searches read the graph under the state's lock,
//! so none can meet a reused slot through the old graph.
//!
//! Full-precision vectors live in the slots, or, for a collection with `on_disk` vectors, in a file by slot
//! (`vector_file`); the graph holds its own copy, f32 or INT8 codes (`quantization`). A quantized search
//! takes `oversampling × limit` candidates from the graph and re-scores them at full precision (`rescore`).
//!
//! Search plans like Qdrant's: with a filter, the points it keeps are counted first; few of them (at most
//! `full_scan_threshold`) are scored exactly, more are searched in the graph with the filter applied during
//! traversal. Small collections are always scanned exactly.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use super::VectorError;
use super::distance::Distance;
use super::filter::Filter;
use super::index::{GraphParams, Index};
use super::point::{Payload, PointId};
use super::quantize::{QuantizationSearch, ScalarQuantization};
use super::vector_file::VectorFile;

/// Rebuild the graph when tombstones are more than this share of it.
const REBUILD_RATIO: f64 = 0.2;
/// ... and at least this many.
const REBUILD_MIN_TOMBSTONES: usize = 256;
/// A quantized graph is refitted from this many points on.
const REFIT_MIN_POINTS: usize = 1024;

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
    /// INT8 codes in the graph instead of f32.
    #[serde(default)]
    pub quantization: Option<ScalarQuantization>,
    /// Full-precision vectors in a file instead of memory (read back to re-score, return and snapshot).
    #[serde(default)]
    pub on_disk: bool,
}

impl CollectionConfig {
    fn graph(&self) -> GraphParams {
        GraphParams { distance: self.distance, dim: self.size, m: self.hnsw.m, ef_construct: self.hnsw.ef_construct }
    }

    /// An empty graph for `sample` (the vectors about to be inserted; they fit a quantizer).
    fn new_index(&self, sample: &[&[f32]]) -> Index {
        match self.quantization {
            Some(q) => Index::quantized(self.graph(), sample.len(), q.quantile, sample),
            None => Index::new(self.graph(), sample.len()),
        }
    }
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
    /// How a quantized graph is used.
    pub quantization: QuantizationSearch,
    pub with_payload: bool,
    pub with_vector: bool,
}

struct Slot {
    id: PointId,
    /// The prepared full-precision vector; empty when the collection keeps them on disk.
    vector: Vec<f32>,
    payload: Payload,
    version: u64,
    /// What it holds in memory, approximately (kept so that `counts` needs no pass over the payloads).
    bytes: usize,
}

impl Slot {
    fn measure(&mut self) {
        self.bytes = self.vector.len() * 4 + serde_json::to_string(&self.payload).map_or(0, |p| p.len()) + 64;
    }
}

struct State {
    /// By slot number (the graph's ids); `None` is a tombstone.
    slots: Vec<Option<Slot>>,
    ids: BTreeMap<PointId, usize>,
    index: Arc<Index>,
    /// Slots written while a rebuild runs, to add to the new graph.
    pending: Option<Vec<usize>>,
    /// Empty slots that no graph node points to, for new points to take.
    free: Vec<usize>,
    /// Operations applied.
    version: u64,
    /// The live slots' `bytes`.
    bytes: usize,
}

impl State {
    /// Empties `slot` (a tombstone).
    fn clear(&mut self, slot: usize) {
        if let Some(old) = self.slots.get_mut(slot).and_then(Option::take) {
            self.bytes -= old.bytes;
        }
    }
}

/// Sizes for `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub points: usize,
    /// Points the current graph holds (live or not).
    pub graph_points: usize,
    /// Bytes held in memory (approximate): vectors, payloads and the graph.
    pub bytes: usize,
    /// Of which the graph (its copy of the vectors, and links).
    pub graph_bytes: usize,
    /// Bytes of full-precision vectors on disk.
    pub disk_bytes: u64,
}

pub struct Collection {
    pub name: String,
    pub config: CollectionConfig,
    state: Arc<RwLock<State>>,
    rebuilding: Arc<AtomicBool>,
    /// Full-precision vectors, when on disk.
    originals: Option<Arc<VectorFile>>,
}

impl Collection {
    /// A collection in memory (`on_disk` needs a folder: see [`Collection::in_folder`]).
    pub fn new(name: &str, config: CollectionConfig) -> Self {
        let index = config.new_index(&[]);
        let state = State {
            slots: Vec::new(),
            ids: BTreeMap::new(),
            index: Arc::new(index),
            pending: None,
            free: Vec::new(),
            version: 0,
            bytes: 0,
        };
        Collection {
            name: name.to_string(),
            config,
            state: Arc::new(RwLock::new(state)),
            rebuilding: Arc::new(AtomicBool::new(false)),
            originals: None,
        }
    }

    /// A collection whose `on_disk` vectors go to `vectors.f32` in `dir` (started empty).
    pub fn in_folder(name: &str, config: CollectionConfig, dir: &Path) -> Result<Self, VectorError> {
        let on_disk = config.on_disk;
        let mut collection = Self::new(name, config);
        if on_disk {
            let file = VectorFile::create(&dir.join("vectors.f32"), collection.config.size)
                .map_err(|e| VectorError::Storage(format!("{}: {e}", dir.join("vectors.f32").display())))?;
            collection.originals = Some(Arc::new(file));
        }
        Ok(collection)
    }

    /// The full-precision vector of `slot`.
    fn original<'a>(&self, slot: usize, s: &'a Slot) -> Result<Cow<'a, [f32]>, VectorError> {
        match &self.originals {
            None => Ok(Cow::Borrowed(&s.vector)),
            Some(file) => file.read(slot).map(Cow::Owned).map_err(|e| read_error(&self.name, slot, e)),
        }
    }

    fn record(&self, slot: usize, s: &Slot, with_payload: bool, with_vector: bool) -> Result<Record, VectorError> {
        Ok(Record {
            id: s.id.clone(),
            payload: with_payload.then(|| s.payload.clone()),
            vector: if with_vector { Some(self.original(slot, s)?.into_owned()) } else { None },
            version: s.version,
        })
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
        let (points, prepared): (Vec<(PointId, Payload)>, Vec<Vec<f32>>) =
            points.into_iter().map(|p| ((p.id, p.payload), self.config.distance.prepare(p.vector))).unzip();
        let mut added = Vec::with_capacity(points.len());
        let mut state = self.write();
        let version = state.version + 1;
        // Slots: free ones first (taken off the list only once the vectors are written), then new ones.
        let reused = state.free.len().min(points.len());
        let end = state.slots.len();
        let targets: Vec<usize> =
            state.free.iter().rev().take(reused).copied().chain(end..end + points.len() - reused).collect();
        // On disk first: a failed write leaves memory as it was.
        if let Some(file) = &self.originals {
            for (&slot, vector) in targets.iter().zip(&prepared) {
                file.write(slot, vector)
                    .map_err(|e| VectorError::Storage(format!("{}: writing vector {slot}: {e}", self.name)))?;
            }
        }
        let keep = state.free.len() - reused;
        state.free.truncate(keep);
        state.version = version;
        for (((id, payload), vector), slot) in points.into_iter().zip(prepared).zip(targets) {
            if let Some(old) = state.ids.get(&id).copied() {
                state.clear(old);
            }
            if let Some(pending) = &mut state.pending {
                pending.push(slot);
            }
            let kept = if self.originals.is_some() { Vec::new() } else { vector.clone() };
            added.push((slot, vector));
            let mut s = Slot { id: id.clone(), vector: kept, payload, version, bytes: 0 };
            s.measure();
            state.bytes += s.bytes;
            if slot == state.slots.len() {
                state.slots.push(Some(s));
            } else {
                state.slots[slot] = Some(s);
            }
            state.ids.insert(id, slot);
        }
        // The first vectors of a quantized collection fit its quantizer (a refit follows as it grows).
        if state.index.is_quantized() && state.index.is_empty() && state.pending.is_none() {
            let sample: Vec<&[f32]> = added.iter().map(|(_, v): &(usize, Vec<f32>)| v.as_slice()).collect();
            state.index = Arc::new(self.config.new_index(&sample));
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
                state.clear(slot);
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
        let state = &mut *state;
        for id in ids {
            let Some(slot) = state.ids.get(id).copied() else { continue };
            if let Some(Some(s)) = state.slots.get_mut(slot) {
                if overwrite {
                    s.payload = payload.clone();
                } else {
                    s.payload.extend(payload.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                s.version = version;
                let before = s.bytes;
                s.measure();
                state.bytes = state.bytes - before + s.bytes;
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
    pub fn get(&self, ids: &[PointId], with_payload: bool, with_vector: bool) -> Result<Vec<Record>, VectorError> {
        let state = self.read();
        ids.iter()
            .filter_map(|id| state.ids.get(id).and_then(|&slot| Some((slot, live(&state, slot)?))))
            .map(|(slot, s)| self.record(slot, s, with_payload, with_vector))
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
    ) -> Result<(Vec<Record>, Option<PointId>), VectorError> {
        let state = self.read();
        let start = offset.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        let mut out = Vec::new();
        for (id, &slot) in state.ids.range::<PointId, _>((start, std::ops::Bound::Unbounded)) {
            let Some(s) = live(&state, slot) else { continue };
            if filter.is_some_and(|f| !f.matches(id, &s.payload)) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, Some(id.clone())));
            }
            out.push(self.record(slot, s, with_payload, with_vector)?);
        }
        Ok((out, None))
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
        let graph_bytes = state.index.bytes();
        Counts {
            points: state.ids.len(),
            graph_points: state.index.len(),
            bytes: state.bytes + graph_bytes,
            graph_bytes,
            disk_bytes: self.originals.as_ref().map_or(0, |f| f.len()),
        }
    }

    /// Every live point with the operation that last wrote it, for a snapshot, and the operation number
    /// the snapshot reflects.
    pub fn dump(&self) -> Result<(Vec<(PointInput, u64)>, u64), VectorError> {
        let state = self.read();
        let points = state
            .ids
            .values()
            .filter_map(|&slot| Some((slot, live(&state, slot)?)))
            .map(|(slot, s)| {
                let vector = self.original(slot, s)?.into_owned();
                Ok((PointInput { id: s.id.clone(), vector, payload: s.payload.clone() }, s.version))
            })
            .collect::<Result<_, VectorError>>()?;
        Ok((points, state.version))
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
        let quantized = state.index.is_quantized();
        let exact = search.exact || (quantized && search.quantization.ignore);
        let small = exact || state.ids.len() <= self.config.hnsw.full_scan_threshold;
        // Candidates from the graph: more of them when its scores are approximate and will be re-scored.
        let rescore = quantized && search.quantization.rescore;
        let candidates =
            if rescore { (wanted as f32 * search.quantization.oversampling.max(1.0)).ceil() as usize } else { wanted };
        let ef = search.ef.unwrap_or(64).max(candidates);
        // The planner: score exactly when few points can be answers, else walk the graph (with the filter
        // applied during traversal).
        let found: Found = match &search.filter {
            None if small => Found::Exact(state.ids.values().copied().collect()),
            None => {
                // Without tombstones in the graph no node needs checking (the check reads the slots, a cache
                // miss per node); should a point written meanwhile make that wrong, the answer is checked below
                // and the search done again with the check.
                let is_live = |slot: &usize| state.slots.get(*slot).is_some_and(Option::is_some);
                let clean = state.index.len() == state.ids.len();
                let mut found = state.index.search(&query, candidates, ef, (!clean).then_some(&is_live as _));
                if clean && !found.iter().all(|(slot, _)| is_live(slot)) {
                    found = state.index.search(&query, candidates, ef, Some(&is_live));
                }
                Found::Graph(found)
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
                    Found::Exact(kept)
                } else {
                    let mut allowed = vec![false; state.slots.len()];
                    for slot in kept {
                        allowed[slot] = true;
                    }
                    let keep = |slot: &usize| allowed.get(*slot).copied().unwrap_or(false);
                    Found::Graph(state.index.search(&query, candidates, ef, Some(&keep)))
                }
            }
        };
        let full_precision = |slot: usize, s: &Slot| -> Result<f32, VectorError> {
            Ok(distance.score(&query, &self.original(slot, s)?))
        };
        let mut scored: Vec<(f32, usize, &Slot)> = Vec::new();
        match found {
            Found::Exact(slots) => {
                for slot in slots {
                    if let Some(s) = live(&state, slot) {
                        scored.push((full_precision(slot, s)?, slot, s));
                    }
                }
            }
            Found::Graph(hits) => {
                for (slot, approximate) in hits {
                    if let Some(s) = live(&state, slot) {
                        let score = if rescore { full_precision(slot, s)? } else { approximate };
                        scored.push((score, slot, s));
                    }
                }
            }
        }
        scored.retain(|(score, _, _)| search.score_threshold.is_none_or(|t| distance.passes(*score, t)));
        scored.sort_by(|a, b| {
            if distance.better(a.0, b.0) {
                std::cmp::Ordering::Less
            } else if distance.better(b.0, a.0) {
                std::cmp::Ordering::Greater
            } else {
                a.2.id.cmp(&b.2.id)
            }
        });
        scored
            .into_iter()
            .skip(search.offset)
            .take(search.limit)
            .map(|(score, slot, s)| {
                Ok(Scored { record: self.record(slot, s, search.with_payload, search.with_vector)?, score })
            })
            .collect()
    }

    /// Starts a background rebuild of the graph when tombstones pile up (one at a time).
    fn maybe_rebuild(&self) {
        let (tombstones, graph, refit) = {
            let state = self.read();
            let graph = state.index.len();
            let live = state.ids.len();
            // A quantizer fitted on few vectors is refitted as the collection grows (4×, 16×, ...).
            let refit = state.index.is_quantized() && live >= REFIT_MIN_POINTS && live >= 4 * state.index.fitted_on();
            (graph.saturating_sub(live), graph.max(1), refit)
        };
        let worn = tombstones >= REBUILD_MIN_TOMBSTONES && (tombstones as f64) >= REBUILD_RATIO * graph as f64;
        if !worn && !refit {
            return;
        }
        if self.rebuilding.swap(true, Ordering::SeqCst) {
            return;
        }
        let (state, rebuilding, config, name, originals) = (
            self.state.clone(),
            self.rebuilding.clone(),
            self.config.clone(),
            self.name.clone(),
            self.originals.clone(),
        );
        let spawned = std::thread::Builder::new().name(format!("rebuild-{name}")).spawn(move || {
            match rebuild(&state, &config, originals.as_deref()) {
                Ok(()) => tracing::info!(collection = %name, tombstones, refit, "graph rebuilt"),
                Err(e) => tracing::error!(collection = %name, error = %e, "graph rebuild failed; the old graph stays"),
            }
            rebuilding.store(false, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.rebuilding.store(false, Ordering::SeqCst);
        }
    }

    /// Rebuilds the graph now, in this thread (tests, and after loading).
    pub fn rebuild_now(&self) -> Result<(), VectorError> {
        rebuild(&self.state, &self.config, self.originals.as_deref())
    }

    /// Slots in use or free (live points, tombstones and free slots).
    #[cfg(test)]
    pub(super) fn slot_count(&self) -> usize {
        self.read().slots.len()
    }

    /// Whether a background rebuild is running.
    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding.load(Ordering::SeqCst)
    }
}

/// A new graph from the live points, built without holding the lock (slots never change once written, so
/// their vectors can be read meanwhile); points written meanwhile are added before it replaces the old one.
/// A quantized graph gets a quantizer fitted on all the live points.
fn rebuild(
    state: &RwLock<State>,
    config: &CollectionConfig,
    originals: Option<&VectorFile>,
) -> Result<(), VectorError> {
    let vector = |slot: usize, kept: &[f32]| -> Result<Vec<f32>, VectorError> {
        match originals {
            None => Ok(kept.to_vec()),
            Some(file) => file.read(slot).map_err(|e| read_error("rebuild", slot, e)),
        }
    };
    let slots: Vec<(usize, Vec<f32>)> = {
        let mut s = state.write().unwrap_or_else(|p| p.into_inner());
        s.pending = Some(Vec::new());
        s.ids.values().filter_map(|&slot| Some((slot, s.slots.get(slot)?.as_ref()?.vector.clone()))).collect()
    };
    let built = (|| {
        let live = slots
            .into_iter()
            .map(|(slot, kept)| Ok((slot, vector(slot, &kept)?)))
            .collect::<Result<Vec<_>, VectorError>>()?;
        let sample: Vec<&[f32]> = live.iter().map(|(_, v)| v.as_slice()).collect();
        let index = config.new_index(&sample);
        for (slot, v) in &live {
            index.insert(v, *slot);
        }
        Ok(index)
    })();
    let mut s = state.write().unwrap_or_else(|p| p.into_inner());
    let pending = s.pending.take().unwrap_or_default();
    let index = built?;
    for slot in pending {
        if let Some(Some(p)) = s.slots.get(slot) {
            index.insert(&vector(slot, &p.vector)?, slot);
        }
    }
    // The empty slots the new graph does not hold are free from now on; those at the end are dropped.
    let held = index.holds(s.slots.len());
    let unused = |slot: usize, s: &State| s.slots[slot].is_none() && !held[slot];
    while !s.slots.is_empty() && unused(s.slots.len() - 1, &s) {
        s.slots.pop();
    }
    s.free = (0..s.slots.len()).rev().filter(|&slot| unused(slot, &s)).collect();
    s.index = Arc::new(index);
    Ok(())
}

/// Where full-precision candidates come from.
enum Found {
    /// Slots to score exactly.
    Exact(Vec<usize>),
    /// Slots the graph found, with its scores.
    Graph(Vec<(usize, f32)>),
}

fn read_error(collection: &str, slot: usize, e: std::io::Error) -> VectorError {
    VectorError::Storage(format!("{collection}: reading vector {slot}: {e}"))
}

fn live(state: &State, slot: usize) -> Option<&Slot> {
    state.slots.get(slot)?.as_ref()
}
