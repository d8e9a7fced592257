//! Vector collections through the engine: texts in points and queries become vectors with the engine's own
//! embedding path (so batching, deadlines and the embedding cache apply), payloads are checked, and the
//! vectors layer does the rest. Transports (the Qdrant API) call only these.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{EmbedRequest, Engine, EngineError};
use crate::vectors::{
    CollectionConfig, Condition, Distance, Filter, HnswParams, Op, Payload, PointId, PointInput, Record,
    ScalarQuantization, Scored, Search, StoredCollection, VectorError,
};

/// A vector, or a text for the engine to embed (Qdrant's `Document`).
#[derive(Debug, Clone, PartialEq)]
pub enum VectorInput {
    Vector(Vec<f32>),
    /// `model`: an embedding model of this server; `None`: the collection's `embedding_model`.
    Text {
        text: String,
        model: Option<String>,
    },
}

/// A point to write.
#[derive(Debug, Clone)]
pub struct PointWrite {
    pub id: PointId,
    pub vector: VectorInput,
    pub payload: Payload,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct CollectionSpec {
    /// `None`: the embedding model's dimensions.
    pub size: Option<usize>,
    pub distance: Distance,
    pub hnsw: HnswParams,
    pub embedding_model: Option<String>,
    pub quantization: Option<ScalarQuantization>,
    /// Full-precision vectors on disk.
    pub on_disk: bool,
}

/// A query: the nearest points to a vector, a text, or an existing point.
#[derive(Debug, Clone)]
pub enum QueryInput {
    Vector(VectorInput),
    /// The nearest points to this point's vector, itself excluded.
    Point(PointId),
}

impl From<VectorError> for EngineError {
    fn from(e: VectorError) -> Self {
        match e {
            VectorError::NotFound(name) => EngineError::CollectionNotFound(name),
            VectorError::AlreadyExists(name) => EngineError::Conflict(format!("collection {name:?} already exists")),
            VectorError::Invalid(m) => EngineError::InvalidInput(m),
            VectorError::Storage(m) => EngineError::Internal(m),
        }
    }
}

impl Engine {
    pub fn collection(&self, name: &str) -> Result<Arc<StoredCollection>, EngineError> {
        Ok(self.collections.get(name)?)
    }

    pub fn vectors_config(&self) -> &crate::vectors::VectorsConfig {
        self.collections.config()
    }

    /// Sets the per-collection gauges (points, points in the graph, bytes held).
    pub fn collection_gauges(&self) {
        for name in self.collections.names() {
            let Ok(stored) = self.collections.get(&name) else { continue };
            let counts = stored.collection.counts();
            let label = [("collection", name)];
            metrics::gauge!("ferroserve_vector_points", &label).set(counts.points as f64);
            metrics::gauge!("ferroserve_vector_graph_points", &label).set(counts.graph_points as f64);
            metrics::gauge!("ferroserve_vector_memory_bytes", &label).set(counts.bytes as f64);
        }
    }

    pub fn collection_names(&self) -> Vec<String> {
        self.collections.names()
    }

    /// Creates a collection; an `embedding_model` must be an embedding model of this server, and gives the
    /// size when none is said (a different size is refused).
    pub async fn create_collection(&self, name: &str, spec: CollectionSpec) -> Result<(), EngineError> {
        let size = match &spec.embedding_model {
            Some(model) => {
                let dims = self.embedding_dimensions(model)?;
                match spec.size {
                    Some(size) if size != dims => {
                        return Err(EngineError::InvalidInput(format!(
                            "vector size {size} does not match embedding model {model:?}, which makes {dims} dimensions"
                        )));
                    }
                    _ => dims,
                }
            }
            None => spec.size.ok_or_else(|| EngineError::InvalidInput("vectors.size is missing".into()))?,
        };
        if let Some(q) = spec.quantization
            && !(q.quantile > 0.5 && q.quantile <= 1.0)
        {
            return Err(EngineError::InvalidInput(format!(
                "quantization_config.scalar.quantile {} must be in (0.5, 1]",
                q.quantile
            )));
        }
        let config = CollectionConfig {
            size,
            distance: spec.distance,
            hnsw: spec.hnsw,
            embedding_model: spec.embedding_model,
            quantization: spec.quantization,
            on_disk: spec.on_disk,
        };
        self.collections.create(name, config).await?;
        metrics::counter!("ferroserve_vector_collections_created_total").increment(1);
        Ok(())
    }

    /// Writes a snapshot of a collection now (and empties its log); returns the snapshot's size in bytes.
    pub async fn snapshot_collection(&self, name: &str) -> Result<u64, EngineError> {
        let collection = self.collection(name)?;
        collection.snapshot().await?;
        Ok(std::fs::metadata(collection.dir().join("snapshot.bin")).map(|m| m.len()).unwrap_or(0))
    }

    pub async fn delete_collection(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.collections.delete(name).await?)
    }

    /// Writes points (all or none): texts are embedded first, every vector and payload is checked.
    pub async fn upsert_points(&self, name: &str, points: Vec<PointWrite>) -> Result<u64, EngineError> {
        let collection = self.collection(name)?;
        let max_payload = self.collections.config().max_payload_bytes;
        for p in &points {
            let bytes = serde_json::to_string(&p.payload).map_or(0, |s| s.len());
            if bytes > max_payload {
                return Err(EngineError::InvalidInput(format!(
                    "point {}: the payload has {bytes} bytes; the limit is {max_payload} (vectors.max_payload_bytes)",
                    p.id
                )));
            }
        }
        let inputs: Vec<(String, VectorInput)> =
            points.iter().map(|p| (format!("point {}", p.id), p.vector.clone())).collect();
        let vectors = self.resolve(&collection, inputs).await?;
        let points = points
            .into_iter()
            .zip(vectors)
            .map(|(p, vector)| PointInput { id: p.id, vector, payload: p.payload })
            .collect::<Vec<_>>();
        let n = points.len() as u64;
        let version = self.timed(name, "upsert", collection.write(Op::Upsert(points))).await?;
        metrics::counter!("ferroserve_vector_points_written_total", "collection" => name.to_string()).increment(n);
        Ok(version)
    }

    /// Deletes points by id, or every point a filter keeps.
    pub async fn delete_points(
        &self,
        name: &str,
        ids: Option<Vec<PointId>>,
        filter: Option<Filter>,
    ) -> Result<u64, EngineError> {
        let collection = self.collection(name)?;
        let ids = self.selection(&collection, ids, filter)?;
        Ok(self.timed(name, "delete", collection.write(Op::Delete(ids))).await?)
    }

    /// Merges `payload` into points' payloads (or replaces them with it when `overwrite`).
    pub async fn set_payload(
        &self,
        name: &str,
        ids: Option<Vec<PointId>>,
        filter: Option<Filter>,
        payload: Payload,
        overwrite: bool,
    ) -> Result<u64, EngineError> {
        let collection = self.collection(name)?;
        let ids = self.selection(&collection, ids, filter)?;
        Ok(self.timed(name, "set_payload", collection.write(Op::SetPayload { ids, payload, overwrite })).await?)
    }

    /// The nearest points to `query`: `search.vector` is filled from it.
    pub async fn query_points(
        &self,
        name: &str,
        query: QueryInput,
        mut search: Search,
    ) -> Result<Vec<Scored>, EngineError> {
        let collection = self.collection(name)?;
        match query {
            QueryInput::Vector(v) => {
                search.vector = self.resolve(&collection, vec![("query".into(), v)]).await?.remove(0);
            }
            QueryInput::Point(id) => {
                let found = collection.collection.get(std::slice::from_ref(&id), false, true)?;
                let vector = found.into_iter().next().and_then(|r| r.vector);
                search.vector =
                    vector.ok_or_else(|| EngineError::InvalidInput(format!("query: point {id} does not exist")))?;
                // Its neighbours, not itself.
                let within = search.filter.take().map(|f| Condition::Nested(Box::new(f)));
                let without = Condition::HasId(std::iter::once(id).collect());
                search.filter =
                    Some(Filter { must: within.into_iter().collect(), must_not: vec![without], ..Default::default() });
            }
        }
        let started = Instant::now();
        let hits = off_runtime(collection, move |c| c.search(&search)).await??;
        metrics::histogram!("ferroserve_vector_search_seconds", "collection" => name.to_string())
            .record(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    pub fn get_points(
        &self,
        name: &str,
        ids: &[PointId],
        with_payload: bool,
        with_vector: bool,
    ) -> Result<Vec<Record>, EngineError> {
        Ok(self.collection(name)?.collection.get(ids, with_payload, with_vector)?)
    }

    /// Up to `limit` points from `offset` on (in id order) that `filter` keeps, and the id to continue from.
    pub async fn scroll_points(
        &self,
        name: &str,
        offset: Option<PointId>,
        limit: usize,
        filter: Option<Filter>,
        with_payload: bool,
        with_vector: bool,
    ) -> Result<(Vec<Record>, Option<PointId>), EngineError> {
        let collection = self.collection(name)?;
        Ok(off_runtime(collection, move |c| {
            c.scroll(offset.as_ref(), limit, filter.as_ref(), with_payload, with_vector)
        })
        .await??)
    }

    /// How many points `filter` keeps (all without one).
    pub async fn count_points(&self, name: &str, filter: Option<Filter>) -> Result<usize, EngineError> {
        let collection = self.collection(name)?;
        off_runtime(collection, move |c| c.count(filter.as_ref())).await
    }

    /// Creates and fills each `[[vectors.seed]]` collection that does not exist yet (a failure is logged;
    /// the collection is removed so that the next start tries again).
    pub async fn seed_collections(&self) {
        for seed in self.collections.config().seed.clone() {
            if self.collection(&seed.collection).is_ok() {
                continue;
            }
            let started = Instant::now();
            match self.seed(&seed).await {
                Ok(n) => tracing::info!(collection = %seed.collection, points = n,
                                        secs = started.elapsed().as_secs_f32(), "collection seeded"),
                Err(e) => {
                    tracing::error!(collection = %seed.collection, file = %seed.file.display(), error = %e,
                                    "seeding failed");
                    let _ = self.delete_collection(&seed.collection).await;
                }
            }
        }
    }

    async fn seed(&self, seed: &crate::vectors::SeedConfig) -> Result<usize, EngineError> {
        let text = std::fs::read_to_string(&seed.file)
            .map_err(|e| EngineError::Internal(format!("{}: {e}", seed.file.display())))?;
        let mut points = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = |m: String| EngineError::InvalidInput(format!("{} line {}: {m}", seed.file.display(), i + 1));
            let mut payload: Payload = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let id = PointId::from_json(&payload.remove("id").unwrap_or(Value::Null)).map_err(at)?;
            let text = payload.get("text").and_then(Value::as_str).ok_or_else(|| at("no \"text\"".into()))?;
            points.push(PointWrite { id, vector: VectorInput::Text { text: text.to_string(), model: None }, payload });
        }
        let spec = CollectionSpec {
            size: None,
            distance: Distance::Cosine,
            hnsw: HnswParams::default(),
            embedding_model: Some(seed.embedding_model.clone()),
            quantization: None,
            on_disk: false,
        };
        self.create_collection(&seed.collection, spec).await?;
        let n = points.len();
        for batch in points.chunks(256) {
            self.upsert_points(&seed.collection, batch.to_vec()).await?;
        }
        Ok(n)
    }

    /// Ids of the points to change: those named, or those `filter` keeps.
    fn selection(
        &self,
        collection: &StoredCollection,
        ids: Option<Vec<PointId>>,
        filter: Option<Filter>,
    ) -> Result<Vec<PointId>, EngineError> {
        match (ids, filter) {
            (Some(ids), None) => Ok(ids),
            (None, Some(filter)) => Ok(collection.collection.select(&filter)),
            (Some(_), Some(_)) => Err(EngineError::InvalidInput("give points or a filter, not both".into())),
            (None, None) => Err(EngineError::InvalidInput("give the points (ids) or a filter".into())),
        }
    }

    /// Vectors for `inputs` (labelled for errors): texts are embedded, grouped by model, in one request each.
    async fn resolve(
        &self,
        collection: &StoredCollection,
        inputs: Vec<(String, VectorInput)>,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        let mut texts: std::collections::BTreeMap<String, Vec<(usize, String)>> = Default::default();
        for (i, (label, input)) in inputs.into_iter().enumerate() {
            match input {
                VectorInput::Vector(v) => {
                    collection.collection.check_vector(&v, &label)?;
                    out[i] = Some(v);
                }
                VectorInput::Text { text, model } => {
                    let model = model.or_else(|| collection.collection.config.embedding_model.clone()).ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "{label}: a text needs a model: collection {:?} has no embedding_model and the document names none",
                            collection.collection.name
                        ))
                    })?;
                    texts.entry(model).or_default().push((i, text));
                }
            }
        }
        for (model, items) in texts {
            let dims = self.embedding_dimensions(&model)?;
            if dims != collection.collection.config.size {
                return Err(EngineError::InvalidInput(format!(
                    "model {model:?} makes {dims}-dimensional vectors; collection {:?} takes {}",
                    collection.collection.name, collection.collection.config.size
                )));
            }
            let (slots, inputs): (Vec<usize>, Vec<String>) = items.into_iter().unzip();
            let embedded = self.embed(EmbedRequest::with_defaults(model, inputs)).await?;
            for (slot, vector) in slots.into_iter().zip(embedded.vectors) {
                out[slot] = Some(vector);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| EngineError::Internal("an input was left without a vector".into())))
            .collect()
    }

    /// Dimensions of a ready embedding model.
    fn embedding_dimensions(&self, model: &str) -> Result<usize, EngineError> {
        let served = self.ready_model(model)?;
        Ok(served.embedding()?.0.dimensions)
    }

    async fn timed<T>(
        &self,
        collection: &str,
        op: &'static str,
        work: impl std::future::Future<Output = Result<T, VectorError>>,
    ) -> Result<T, VectorError> {
        let started = Instant::now();
        let result = work.await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::histogram!("ferroserve_vector_write_seconds", "collection" => collection.to_string(), "op" => op)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("ferroserve_vector_writes_total", "collection" => collection.to_string(), "op" => op, "outcome" => outcome)
            .increment(1);
        result
    }
}

/// Runs a scan or search of `collection` on the blocking pool: it may visit every point.
async fn off_runtime<T: Send + 'static>(
    collection: Arc<StoredCollection>,
    work: impl FnOnce(&crate::vectors::Collection) -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(move || work(&collection.collection))
        .await
        .map_err(|e| EngineError::Internal(format!("collection task failed: {e}")))
}
