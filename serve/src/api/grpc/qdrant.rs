//! Qdrant's gRPC API: the `qdrant.Collections` and `qdrant.Points` services (the subset `qdrant-client`
//! with `prefer_grpc=True` uses for collections and points) and `qdrant.Qdrant/HealthCheck`, a thin adapter
//! over the engine's collections, as the REST adapter is. Where a vector goes, a `Document` may go instead:
//! the server embeds it. A collection that embeds texts itself names its model in the collection's
//! `metadata` (`{"embedding_model": "..."}`). Methods outside the subset answer UNIMPLEMENTED.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ferroserve_proto::qdrant::{
    self as pb, collections_server::Collections, points_server::Points, qdrant_server::Qdrant,
};
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::api::QDRANT_API_VERSION;
use crate::engine::{CollectionSpec, Engine, PointWrite, QueryInput, VectorInput};
use crate::vectors::qdrant_proto::{filter, from_json, from_payload, point_id, point_ids, to_payload, to_pb_id};
use crate::vectors::{
    Distance, Filter, HnswParams, PayloadSelector, PointId, QuantizationSearch, Record, ScalarQuantization, Scored,
    Search,
};

#[derive(Clone)]
pub struct QdrantService {
    engine: Arc<Engine>,
}

impl QdrantService {
    pub fn new(engine: Arc<Engine>) -> Self {
        QdrantService { engine }
    }
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

fn seconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

// ---- vectors and selectors ----

fn document(d: pb::Document, at: &str) -> Result<VectorInput, Status> {
    if d.text.is_empty() {
        return Err(invalid(format!("{at}.text is empty")));
    }
    let model = (!d.model.is_empty()).then_some(d.model);
    Ok(VectorInput::Text { text: d.text, model })
}

/// A point's vector: dense numbers or a document.
fn vectors(v: Option<pb::Vectors>, at: &str) -> Result<VectorInput, Status> {
    use pb::vector::Vector as V;
    use pb::vectors::VectorsOptions;
    let vector = match v.and_then(|v| v.vectors_options) {
        Some(VectorsOptions::Vector(v)) => v,
        Some(VectorsOptions::Vectors(named)) => {
            let mut named = named.vectors;
            match (named.len(), named.remove("")) {
                (1, Some(v)) => v,
                _ => return Err(invalid(format!("{at}: named vectors are not supported; send one unnamed vector"))),
            }
        }
        None => return Err(invalid(format!("{at} is missing"))),
    };
    #[allow(deprecated)]
    let legacy = vector.data;
    match vector.vector {
        Some(V::Dense(d)) => Ok(VectorInput::Vector(d.data)),
        Some(V::Document(d)) => document(d, at),
        None if !legacy.is_empty() => Ok(VectorInput::Vector(legacy)),
        None => Err(invalid(format!("{at} is empty"))),
        Some(_) => Err(invalid(format!("{at}: only dense vectors and documents are supported"))),
    }
}

fn query_input(q: Option<pb::Query>, at: &str) -> Result<QueryInput, Status> {
    use pb::query::Variant;
    use pb::vector_input::Variant as Input;
    let nearest = match q.and_then(|q| q.variant) {
        Some(Variant::Nearest(n)) => n,
        Some(_) => return Err(invalid(format!("{at}: only nearest-neighbour queries are supported"))),
        None => return Err(invalid(format!("{at} is missing"))),
    };
    match nearest.variant {
        Some(Input::Dense(d)) => Ok(QueryInput::Vector(VectorInput::Vector(d.data))),
        Some(Input::Document(d)) => Ok(QueryInput::Vector(document(d, at)?)),
        Some(Input::Id(id)) => Ok(QueryInput::Point(point_id(Some(id), at).map_err(invalid)?)),
        Some(_) => Err(invalid(format!("{at}: only dense vectors, documents and point ids are supported"))),
        None => Err(invalid(format!("{at} is empty"))),
    }
}

fn payload_selector(s: Option<pb::WithPayloadSelector>, default: bool) -> PayloadSelector {
    use pb::with_payload_selector::SelectorOptions;
    match s.and_then(|s| s.selector_options) {
        None => PayloadSelector::from_bool(default),
        Some(SelectorOptions::Enable(b)) => PayloadSelector::from_bool(b),
        Some(SelectorOptions::Include(i)) => PayloadSelector::Include(i.fields),
        Some(SelectorOptions::Exclude(e)) => PayloadSelector::Exclude(e.fields),
    }
}

fn with_vectors(s: Option<pb::WithVectorsSelector>) -> bool {
    use pb::with_vectors_selector::SelectorOptions;
    match s.and_then(|s| s.selector_options) {
        Some(SelectorOptions::Enable(b)) => b,
        Some(SelectorOptions::Include(names)) => !names.names.is_empty(),
        None => false,
    }
}

fn vectors_output(vector: Option<Vec<f32>>) -> Option<pb::VectorsOutput> {
    use pb::vector_output::Vector as V;
    use pb::vectors_output::VectorsOptions;
    vector.map(|data| pb::VectorsOutput {
        vectors_options: Some(VectorsOptions::Vector(pb::VectorOutput {
            vector: Some(V::Dense(pb::DenseVector { data })),
            ..Default::default()
        })),
    })
}

fn retrieved(r: Record, selector: &PayloadSelector) -> pb::RetrievedPoint {
    pb::RetrievedPoint {
        id: Some(to_pb_id(r.id)),
        payload: selector.apply(r.payload).map(from_payload).unwrap_or_default(),
        vectors: vectors_output(r.vector),
        ..Default::default()
    }
}

fn scored(s: Scored, selector: &PayloadSelector) -> pb::ScoredPoint {
    let Scored { record, score } = s;
    pb::ScoredPoint {
        id: Some(to_pb_id(record.id)),
        payload: selector.apply(record.payload).map(from_payload).unwrap_or_default(),
        score,
        version: record.version,
        vectors: vectors_output(record.vector),
        ..Default::default()
    }
}

/// Ids or a filter: which points a delete or payload update changes.
fn selection(s: Option<pb::PointsSelector>, at: &str) -> Result<(Option<Vec<PointId>>, Option<Filter>), Status> {
    use pb::points_selector::PointsSelectorOneOf;
    match s.and_then(|s| s.points_selector_one_of) {
        Some(PointsSelectorOneOf::Points(list)) => {
            Ok((Some(point_ids(list.ids, &format!("{at}.points")).map_err(invalid)?), None))
        }
        Some(PointsSelectorOneOf::Filter(f)) => Ok((None, filter(Some(f), &format!("{at}.filter")).map_err(invalid)?)),
        None => Err(invalid(format!("{at} is missing: give point ids or a filter"))),
    }
}

fn update_response(started: Instant, version: u64, wait: Option<bool>) -> Response<pb::PointsOperationResponse> {
    let status = if wait == Some(false) { pb::UpdateStatus::Acknowledged } else { pb::UpdateStatus::Completed };
    Response::new(pb::PointsOperationResponse {
        result: Some(pb::UpdateResult { operation_id: Some(version), status: status as i32 }),
        time: seconds(started),
        usage: None,
    })
}

// ---- collections ----

fn distance(d: i32) -> Result<Distance, Status> {
    match pb::Distance::try_from(d) {
        Ok(pb::Distance::Cosine) => Ok(Distance::Cosine),
        Ok(pb::Distance::Dot) => Ok(Distance::Dot),
        Ok(pb::Distance::Euclid) => Ok(Distance::Euclid),
        _ => Err(invalid(format!("vectors_config.distance {d} is not supported: Cosine, Dot or Euclid"))),
    }
}

fn to_pb_distance(d: Distance) -> pb::Distance {
    match d {
        Distance::Cosine => pb::Distance::Cosine,
        Distance::Dot => pb::Distance::Dot,
        Distance::Euclid => pb::Distance::Euclid,
    }
}

fn hnsw_params(diffs: [Option<&pb::HnswConfigDiff>; 2]) -> HnswParams {
    let mut hnsw = HnswParams::default();
    for d in diffs.into_iter().flatten() {
        let set = |field: Option<u64>, into: &mut usize| {
            if let Some(v) = field {
                *into = v as usize;
            }
        };
        set(d.m, &mut hnsw.m);
        set(d.ef_construct, &mut hnsw.ef_construct);
        set(d.full_scan_threshold, &mut hnsw.full_scan_threshold);
    }
    hnsw
}

fn collection_spec(c: pb::CreateCollection) -> Result<CollectionSpec, Status> {
    use pb::vectors_config::Config;
    let mut metadata = to_payload(c.metadata, "metadata").map_err(invalid)?;
    let embedding_model = match metadata.remove("embedding_model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m),
        Some(other) => return Err(invalid(format!("metadata.embedding_model must be a string, got {other}"))),
    };
    let params = match c.vectors_config.and_then(|v| v.config) {
        Some(Config::Params(p)) => Some(p),
        Some(Config::ParamsMap(_)) => {
            return Err(invalid("named vectors are not supported: give vectors_config.params"));
        }
        None => None,
    };
    let (size, distance, vector_hnsw) = match &params {
        Some(p) => (Some(p.size as usize), distance(p.distance)?, p.hnsw_config.as_ref()),
        None => (None, Distance::Cosine, None),
    };
    #[allow(deprecated)]
    let on_disk = params.as_ref().and_then(|p| p.on_disk).unwrap_or(false);
    // Per-vector quantization overrides the collection's.
    let quantization = match params.as_ref().and_then(|p| p.quantization_config) {
        Some(q) => quantization_config(q)?,
        None => c.quantization_config.map(quantization_config).transpose()?.flatten(),
    };
    if size == Some(0) {
        return Err(invalid("vectors_config.params.size must be positive"));
    }
    let hnsw = hnsw_params([c.hnsw_config.as_ref(), vector_hnsw]);
    Ok(CollectionSpec { size, distance, hnsw, embedding_model, quantization, on_disk })
}

/// Scalar INT8 quantization only.
fn quantization_config(q: pb::QuantizationConfig) -> Result<Option<ScalarQuantization>, Status> {
    use pb::quantization_config::Quantization;
    match q.quantization {
        None => Ok(None),
        Some(Quantization::Scalar(s)) => {
            if pb::QuantizationType::try_from(s.r#type) != Ok(pb::QuantizationType::Int8) {
                return Err(invalid("quantization_config.scalar.type must be Int8"));
            }
            let mut q = ScalarQuantization::default();
            if let Some(quantile) = s.quantile {
                q.quantile = quantile;
            }
            Ok(Some(q))
        }
        Some(_) => Err(invalid("quantization_config: only scalar (INT8) quantization is supported")),
    }
}

/// A search's `params.quantization`.
fn quantization_search(q: Option<pb::QuantizationSearchParams>) -> Result<QuantizationSearch, Status> {
    let mut out = QuantizationSearch::default();
    let Some(q) = q else { return Ok(out) };
    out.ignore = q.ignore.unwrap_or(out.ignore);
    out.rescore = q.rescore.unwrap_or(out.rescore);
    if let Some(o) = q.oversampling {
        if !(o >= 1.0 && o.is_finite()) {
            return Err(invalid(format!("params.quantization.oversampling must be a number ≥ 1, got {o}")));
        }
        out.oversampling = o as f32;
    }
    Ok(out)
}

fn collection_info(engine: &Engine, name: &str) -> Result<pb::CollectionInfo, Status> {
    use pb::vectors_config::Config;
    let stored = engine.collection(name).map_err(to_status)?;
    let c = &stored.collection;
    let counts = c.counts();
    let hnsw = pb::HnswConfigDiff {
        m: Some(c.config.hnsw.m as u64),
        ef_construct: Some(c.config.hnsw.ef_construct as u64),
        full_scan_threshold: Some(c.config.hnsw.full_scan_threshold as u64),
        ..Default::default()
    };
    let params = pb::CollectionParams {
        shard_number: 1,
        vectors_config: Some(pb::VectorsConfig {
            #[allow(deprecated)]
            config: Some(Config::Params(pb::VectorParams {
                size: c.config.size as u64,
                distance: to_pb_distance(c.config.distance) as i32,
                on_disk: Some(c.config.on_disk),
                ..Default::default()
            })),
        }),
        replication_factor: Some(1),
        write_consistency_factor: Some(1),
        ..Default::default()
    };
    let mut metadata = HashMap::new();
    if let Some(model) = &c.config.embedding_model {
        metadata.insert("embedding_model".to_string(), from_json(Value::String(model.clone())));
    }
    let status = if c.is_rebuilding() { pb::CollectionStatus::Yellow } else { pb::CollectionStatus::Green };
    Ok(pb::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(pb::OptimizerStatus { ok: true, error: String::new() }),
        segments_count: 1,
        config: Some(pb::CollectionConfig {
            params: Some(params),
            hnsw_config: Some(hnsw),
            optimizer_config: Some(pb::OptimizersConfigDiff {
                deleted_threshold: Some(0.2),
                vacuum_min_vector_number: Some(256),
                default_segment_number: Some(1),
                flush_interval_sec: Some(0),
                ..Default::default()
            }),
            wal_config: Some(pb::WalConfigDiff {
                wal_capacity_mb: Some(engine.vectors_config().snapshot_wal_mb),
                wal_segments_ahead: Some(0),
                ..Default::default()
            }),
            metadata,
            quantization_config: c.config.quantization.map(|q| pb::QuantizationConfig {
                quantization: Some(pb::quantization_config::Quantization::Scalar(pb::ScalarQuantization {
                    r#type: pb::QuantizationType::Int8 as i32,
                    quantile: Some(q.quantile),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }),
        points_count: Some(counts.points as u64),
        indexed_vectors_count: Some(counts.points as u64),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl Collections for QdrantService {
    async fn get(
        &self,
        request: Request<pb::GetCollectionInfoRequest>,
    ) -> Result<Response<pb::GetCollectionInfoResponse>, Status> {
        let started = Instant::now();
        let info = collection_info(&self.engine, &request.into_inner().collection_name)?;
        Ok(Response::new(pb::GetCollectionInfoResponse { result: Some(info), time: seconds(started) }))
    }

    async fn list(
        &self,
        _request: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let started = Instant::now();
        let collections =
            self.engine.collection_names().into_iter().map(|name| pb::CollectionDescription { name }).collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections, time: seconds(started) }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let name = request.collection_name.clone();
        let spec = collection_spec(request)?;
        self.engine.create_collection(&name, spec).await.map_err(to_status)?;
        Ok(Response::new(pb::CollectionOperationResponse { result: true, time: seconds(started) }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let started = Instant::now();
        let deleted = self.engine.delete_collection(&request.into_inner().collection_name).await.map_err(to_status)?;
        Ok(Response::new(pb::CollectionOperationResponse { result: deleted, time: seconds(started) }))
    }

    async fn collection_exists(
        &self,
        request: Request<pb::CollectionExistsRequest>,
    ) -> Result<Response<pb::CollectionExistsResponse>, Status> {
        let started = Instant::now();
        let exists = self.engine.collection(&request.into_inner().collection_name).is_ok();
        Ok(Response::new(pb::CollectionExistsResponse {
            result: Some(pb::CollectionExists { exists }),
            time: seconds(started),
        }))
    }
}

// ---- points ----

impl QdrantService {
    async fn run_query(&self, q: pb::QueryPoints) -> Result<Vec<pb::ScoredPoint>, Status> {
        if !q.prefetch.is_empty() {
            return Err(invalid("prefetch is not supported"));
        }
        if q.lookup_from.is_some() {
            return Err(invalid("lookup_from is not supported"));
        }
        if q.using.as_deref().is_some_and(|u| !u.is_empty()) {
            return Err(invalid("using: named vectors are not supported"));
        }
        let query = query_input(q.query, "query")?;
        let selector = payload_selector(q.with_payload, false);
        let params = q.params.unwrap_or_default();
        let search = Search {
            vector: Vec::new(),
            limit: q.limit.unwrap_or(10) as usize,
            offset: q.offset.unwrap_or(0) as usize,
            filter: filter(q.filter, "filter").map_err(invalid)?,
            score_threshold: q.score_threshold,
            ef: params.hnsw_ef.map(|n| n as usize),
            exact: params.exact.unwrap_or(false),
            quantization: quantization_search(params.quantization)?,
            with_payload: selector.wants(),
            with_vector: with_vectors(q.with_vectors),
        };
        let hits = self.engine.query_points(&q.collection_name, query, search).await.map_err(to_status)?;
        Ok(hits.into_iter().map(|h| scored(h, &selector)).collect())
    }

    async fn payload_update(
        &self,
        request: pb::SetPayloadPoints,
        overwrite: bool,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        if request.key.is_some() {
            return Err(invalid("key: setting a payload under a nested key is not supported"));
        }
        let (ids, filter) = selection(request.points_selector, "points_selector")?;
        let payload = to_payload(request.payload, "payload").map_err(invalid)?;
        let version = self
            .engine
            .set_payload(&request.collection_name, ids, filter, payload, overwrite)
            .await
            .map_err(to_status)?;
        Ok(update_response(started, version, request.wait))
    }
}

#[tonic::async_trait]
impl Points for QdrantService {
    async fn upsert(
        &self,
        request: Request<pb::UpsertPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        if request.update_filter.is_some() {
            return Err(invalid("update_filter is not supported"));
        }
        if request.points.is_empty() {
            return Err(invalid("points is empty"));
        }
        let points = request
            .points
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let at = format!("points[{i}]");
                Ok(PointWrite {
                    id: point_id(p.id, &format!("{at}.id")).map_err(invalid)?,
                    vector: vectors(p.vectors, &format!("{at}.vectors"))?,
                    payload: to_payload(p.payload, &format!("{at}.payload")).map_err(invalid)?,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let version = self.engine.upsert_points(&request.collection_name, points).await.map_err(to_status)?;
        Ok(update_response(started, version, request.wait))
    }

    async fn delete(
        &self,
        request: Request<pb::DeletePoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let (ids, filter) = selection(request.points, "points")?;
        let version = self.engine.delete_points(&request.collection_name, ids, filter).await.map_err(to_status)?;
        Ok(update_response(started, version, request.wait))
    }

    async fn get(&self, request: Request<pb::GetPoints>) -> Result<Response<pb::GetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let ids = point_ids(request.ids, "ids").map_err(invalid)?;
        let selector = payload_selector(request.with_payload, true);
        let records = self
            .engine
            .get_points(&request.collection_name, &ids, selector.wants(), with_vectors(request.with_vectors))
            .map_err(to_status)?;
        let result = records.into_iter().map(|r| retrieved(r, &selector)).collect();
        Ok(Response::new(pb::GetResponse { result, time: seconds(started), usage: None }))
    }

    async fn set_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        self.payload_update(request.into_inner(), false).await
    }

    async fn overwrite_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        self.payload_update(request.into_inner(), true).await
    }

    async fn scroll(&self, request: Request<pb::ScrollPoints>) -> Result<Response<pb::ScrollResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        if request.order_by.is_some() {
            return Err(invalid("order_by is not supported: points scroll in id order"));
        }
        let offset = request.offset.map(|o| point_id(Some(o), "offset")).transpose().map_err(invalid)?;
        let selector = payload_selector(request.with_payload, true);
        let (records, next) = self
            .engine
            .scroll_points(
                &request.collection_name,
                offset,
                request.limit.unwrap_or(10) as usize,
                filter(request.filter, "filter").map_err(invalid)?,
                selector.wants(),
                with_vectors(request.with_vectors),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ScrollResponse {
            next_page_offset: next.map(to_pb_id),
            result: records.into_iter().map(|r| retrieved(r, &selector)).collect(),
            time: seconds(started),
            usage: None,
        }))
    }

    async fn count(&self, request: Request<pb::CountPoints>) -> Result<Response<pb::CountResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let count = self
            .engine
            .count_points(&request.collection_name, filter(request.filter, "filter").map_err(invalid)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CountResponse {
            result: Some(pb::CountResult { count: count as u64 }),
            time: seconds(started),
            usage: None,
        }))
    }

    async fn query(&self, request: Request<pb::QueryPoints>) -> Result<Response<pb::QueryResponse>, Status> {
        let started = Instant::now();
        let result = self.run_query(request.into_inner()).await?;
        Ok(Response::new(pb::QueryResponse { result, time: seconds(started), usage: None }))
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let mut result = Vec::with_capacity(request.query_points.len());
        for mut q in request.query_points {
            if q.collection_name.is_empty() {
                q.collection_name = request.collection_name.clone();
            }
            result.push(pb::BatchResult { result: self.run_query(q).await? });
        }
        Ok(Response::new(pb::QueryBatchResponse { result, time: seconds(started), usage: None }))
    }
}

#[tonic::async_trait]
impl Qdrant for QdrantService {
    async fn health_check(
        &self,
        _request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckReply>, Status> {
        Ok(Response::new(pb::HealthCheckReply {
            title: "ferroserve (Qdrant-compatible API)".into(),
            version: QDRANT_API_VERSION.into(),
            commit: None,
        }))
    }
}
