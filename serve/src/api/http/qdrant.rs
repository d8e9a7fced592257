//! The Qdrant REST API (the subset `qdrant-client` uses for collections and points), over the engine's
//! collections: answers in Qdrant's envelope `{"result", "status": "ok", "time"}`, errors as
//! `{"status": {"error"}, "time"}`. Where a vector goes, a `Document` (`{"text", "model"}`) may go instead
//! (what `QdrantClient(cloud_inference=True)` sends): the server embeds it.

use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ferroserve_models::json_number::{f32_number, f32_numbers};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use super::schemas::{
    CollectionExists, CollectionInfo, CollectionList, CountRequest, CountResult, CreateCollection, GetPoints,
    PointRecord, PointsSelector, QdrantAnswer, QdrantErrorBody, QdrantRoot, QueryBatch, QueryRequest, QueryResult,
    ScrollRequest, ScrollResult, SetPayload, SnapshotDescription, UpdateResult, UpsertPoints,
};
use crate::api::QDRANT_API_VERSION;
use crate::engine::{CollectionSpec, EngineError, PointWrite, QueryInput, VectorInput};
use crate::vectors::{
    Distance, Filter, HnswParams, Payload, PayloadSelector, PointId, QuantizationSearch, Record, ScalarQuantization,
    Scored, Search,
};

/// An error in Qdrant's shape.
pub struct QdrantError(ApiError);

impl<E: Into<ApiError>> From<E> for QdrantError {
    fn from(e: E) -> Self {
        QdrantError(e.into())
    }
}

impl IntoResponse for QdrantError {
    fn into_response(self) -> Response {
        (self.0.status, Json(json!({"status": {"error": self.0.message}, "time": 0.0}))).into_response()
    }
}

type Answer = Result<Response, QdrantError>;
type Body = JsonBody<Value, QdrantError>;

fn ok(started: Instant, result: Value) -> Answer {
    Ok(Json(json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()})).into_response())
}

fn invalid(message: impl Into<String>) -> QdrantError {
    QdrantError(ApiError::from(EngineError::InvalidInput(message.into())))
}

/// Qdrant's root: the API this server follows.
#[utoipa::path(get, path = "/", tag = "Collections (Qdrant)",
    responses((status = 200, description = "Title and version", body = QdrantRoot)))]
pub async fn root() -> Json<Value> {
    Json(json!({"title": "ferroserve (Qdrant-compatible API)", "version": QDRANT_API_VERSION}))
}

/// The collections' names.
#[utoipa::path(get, path = "/collections", tag = "Collections (Qdrant)",
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<CollectionList>)))]
pub async fn list_collections(State(state): State<AppState>) -> Answer {
    let started = Instant::now();
    let names: Vec<Value> = state.engine.collection_names().into_iter().map(|name| json!({"name": name})).collect();
    ok(started, json!({"collections": names}))
}

/// Creates a collection (a vector size and distance, or an embedding model that sets them).
#[utoipa::path(put, path = "/collections/{name}", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")), request_body = CreateCollection,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<bool>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn create_collection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body, _): Body,
) -> Answer {
    let started = Instant::now();
    // ferroserve's own `embedding_model`, at the top or in Qdrant's collection `metadata` (where clients can set it).
    let embedding_model = match optional_str(&body, "embedding_model")? {
        Some(model) => Some(model),
        None => match body.get("metadata") {
            Some(metadata) if !metadata.is_null() => optional_str(metadata, "embedding_model")?,
            _ => None,
        },
    };
    let mut quantization = quantization_config(body.get("quantization_config"))?;
    let mut on_disk = false;
    let (size, distance) = match body.get("vectors") {
        None | Some(Value::Null) => (None, Distance::Cosine),
        Some(Value::Object(v)) if v.contains_key("size") || v.contains_key("distance") => {
            let size = v
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("vectors.size must be a positive integer"))?;
            let distance = match v.get("distance").and_then(Value::as_str) {
                Some("Cosine") => Distance::Cosine,
                Some("Dot") => Distance::Dot,
                Some("Euclid") => Distance::Euclid,
                other => {
                    return Err(invalid(format!("vectors.distance {other:?} is not supported: Cosine, Dot or Euclid")));
                }
            };
            on_disk = v.get("on_disk").and_then(Value::as_bool).unwrap_or(false);
            // Per-vector quantization overrides the collection's.
            if let Some(q) = quantization_config(v.get("quantization_config"))? {
                quantization = Some(q);
            }
            (Some(size as usize), distance)
        }
        Some(_) => {
            return Err(invalid("named vectors are not supported: give vectors as {\"size\": N, \"distance\": ...}"));
        }
    };
    let mut hnsw = HnswParams::default();
    if let Some(h) = body.get("hnsw_config").filter(|h| !h.is_null()) {
        let field = |k: &str| h.get(k).and_then(Value::as_u64).map(|n| n as usize);
        hnsw.m = field("m").unwrap_or(hnsw.m);
        hnsw.ef_construct = field("ef_construct").unwrap_or(hnsw.ef_construct);
        hnsw.full_scan_threshold = field("full_scan_threshold").unwrap_or(hnsw.full_scan_threshold);
    }
    let spec = CollectionSpec { size, distance, hnsw, embedding_model, quantization, on_disk };
    state.engine.create_collection(&name, spec).await?;
    ok(started, json!(true))
}

/// `quantization_config`: `{"scalar": {"type": "int8", "quantile"?, "always_ram"?}}` (INT8 only).
fn quantization_config(v: Option<&Value>) -> Result<Option<ScalarQuantization>, QdrantError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(None) };
    let Some(scalar) = v.get("scalar") else {
        return Err(invalid(
            "quantization_config: only scalar quantization ({\"scalar\": {\"type\": \"int8\"}}) is supported",
        ));
    };
    match scalar.get("type").and_then(Value::as_str) {
        Some("int8") | None => {}
        Some(other) => {
            return Err(invalid(format!("quantization_config.scalar.type {other:?} is not supported: int8")));
        }
    }
    let mut q = ScalarQuantization::default();
    if let Some(quantile) = scalar.get("quantile").filter(|v| !v.is_null()) {
        q.quantile =
            quantile.as_f64().ok_or_else(|| invalid("quantization_config.scalar.quantile must be a number"))? as f32;
    }
    Ok(Some(q))
}

/// A search's `params.quantization`: `{"ignore", "rescore", "oversampling"}`.
fn quantization_search(v: Option<&Value>) -> Result<QuantizationSearch, QdrantError> {
    let mut q = QuantizationSearch::default();
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(q) };
    let flag = |k: &str, default: bool| -> Result<bool, QdrantError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(invalid(format!("params.quantization.{k} must be a boolean, got {other}"))),
        }
    };
    q.ignore = flag("ignore", q.ignore)?;
    q.rescore = flag("rescore", q.rescore)?;
    match v.get("oversampling") {
        None | Some(Value::Null) => {}
        Some(o) => match o.as_f64() {
            Some(x) if x >= 1.0 && x.is_finite() => q.oversampling = x as f32,
            _ => return Err(invalid(format!("params.quantization.oversampling must be a number ≥ 1, got {o}"))),
        },
    }
    Ok(q)
}

/// A collection's points, memory and configuration.
#[utoipa::path(get, path = "/collections/{name}", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")),
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<CollectionInfo>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn get_collection(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    let started = Instant::now();
    let stored = state.engine.collection(&name)?;
    let c = &stored.collection;
    let counts = c.counts();
    let distance = format!("{:?}", c.config.distance);
    ok(
        started,
        json!({
            "status": if c.is_rebuilding() { "yellow" } else { "green" },
            "optimizer_status": "ok",
            "points_count": counts.points,
            "indexed_vectors_count": counts.points,
            "segments_count": 1,
            "config": {
                "params": {
                    "vectors": {"size": c.config.size, "distance": distance, "on_disk": c.config.on_disk},
                    "shard_number": 1, "replication_factor": 1, "write_consistency_factor": 1, "on_disk_payload": false,
                },
                "hnsw_config": {
                    "m": c.config.hnsw.m, "ef_construct": c.config.hnsw.ef_construct,
                    "full_scan_threshold": c.config.hnsw.full_scan_threshold,
                },
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 256, "default_segment_number": 1, "flush_interval_sec": 0},
                "wal_config": {"wal_capacity_mb": state.engine.vectors_config().snapshot_wal_mb, "wal_segments_ahead": 0},
                "quantization_config": c.config.quantization.map(|q| {
                    json!({"scalar": {"type": "int8", "quantile": q.quantile, "always_ram": true}})
                }),
                "metadata": c.config.embedding_model.as_ref().map(|m| json!({"embedding_model": m})),
            },
            "payload_schema": {},
            // ferroserve's own: the graph (tombstones included), memory, and the model that embeds texts.
            "graph_points_count": counts.graph_points,
            "memory_bytes": counts.bytes,
            "graph_memory_bytes": counts.graph_bytes,
            "disk_vector_bytes": counts.disk_bytes,
            "embedding_model": c.config.embedding_model,
        }),
    )
}

/// Deletes a collection and its files; `false` when there was none.
#[utoipa::path(delete, path = "/collections/{name}", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")),
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<bool>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn delete_collection(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    let started = Instant::now();
    let deleted = state.engine.delete_collection(&name).await?;
    ok(started, json!(deleted))
}

/// Qdrant's "create snapshot": here, persist a snapshot now (the log is emptied); answers its description.
#[utoipa::path(post, path = "/collections/{name}/snapshots", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")),
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<SnapshotDescription>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn create_snapshot(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    let started = Instant::now();
    let size = state.engine.snapshot_collection(&name).await?;
    ok(started, json!({"name": "snapshot.bin", "creation_time": null, "size": size}))
}

/// Whether the collection exists.
#[utoipa::path(get, path = "/collections/{name}/exists", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")),
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<CollectionExists>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn collection_exists(State(state): State<AppState>, Path(name): Path<String>) -> Answer {
    let started = Instant::now();
    ok(started, json!({"exists": state.engine.collection(&name).is_ok()}))
}

#[derive(Deserialize)]
struct WaitParam {
    #[serde(default)]
    wait: Option<bool>,
}

/// The `?wait=` of a write; a value that is not a boolean is refused in Qdrant's shape.
pub struct Wait(Option<bool>);

impl<S: Send + Sync> FromRequestParts<S> for Wait {
    type Rejection = QdrantError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, QdrantError> {
        let Query(p) = Query::<WaitParam>::from_request_parts(parts, state)
            .await
            .map_err(|e| invalid(format!("query string: {}", e.body_text())))?;
        Ok(Wait(p.wait))
    }
}

fn update_result(started: Instant, version: u64, wait: Option<bool>) -> Answer {
    let status = if wait == Some(false) { "acknowledged" } else { "completed" };
    ok(started, json!({"operation_id": version, "status": status}))
}

/// Inserts or replaces points; a vector may be a text the server embeds.
#[utoipa::path(put, path = "/collections/{name}/points", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection"), ("wait" = Option<bool>, Query, description = "Answer after the write is applied (default); false: once it is in the write-ahead log")), request_body = UpsertPoints,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<UpdateResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn upsert_points(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Wait(wait): Wait,
    JsonBody(body, _): Body,
) -> Answer {
    let started = Instant::now();
    let points = match (body.get("points"), body.get("batch")) {
        (Some(Value::Array(points)), None) => {
            points.iter().enumerate().map(|(i, p)| point(p, i)).collect::<Result<Vec<_>, _>>()?
        }
        (None, Some(batch)) => batch_points(batch)?,
        _ => return Err(invalid("send {\"points\": [...]} or {\"batch\": {\"ids\", \"vectors\", \"payloads\"}}")),
    };
    if points.is_empty() {
        return Err(invalid("points is empty"));
    }
    let version = state.engine.upsert_points(&name, points).await?;
    update_result(started, version, wait)
}

fn point(p: &Value, i: usize) -> Result<PointWrite, QdrantError> {
    let at = format!("points[{i}]");
    let id = PointId::from_json(p.get("id").unwrap_or(&Value::Null)).map_err(|e| invalid(format!("{at}.id: {e}")))?;
    let vector = vector_input(p.get("vector").unwrap_or(&Value::Null), &format!("{at}.vector"))?;
    Ok(PointWrite { id, vector, payload: payload(p.get("payload"), &format!("{at}.payload"))? })
}

fn batch_points(batch: &Value) -> Result<Vec<PointWrite>, QdrantError> {
    let list = |k: &str| batch.get(k).and_then(Value::as_array);
    let ids = list("ids").ok_or_else(|| invalid("batch.ids must be a list"))?;
    let vectors = list("vectors").ok_or_else(|| invalid("batch.vectors must be a list"))?;
    let payloads = list("payloads");
    if vectors.len() != ids.len() || payloads.is_some_and(|p| p.len() != ids.len()) {
        return Err(invalid("batch.ids, batch.vectors and batch.payloads must have the same length"));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            Ok(PointWrite {
                id: PointId::from_json(id).map_err(|e| invalid(format!("batch.ids[{i}]: {e}")))?,
                vector: vector_input(&vectors[i], &format!("batch.vectors[{i}]"))?,
                payload: payload(payloads.and_then(|p| p.get(i)), &format!("batch.payloads[{i}]"))?,
            })
        })
        .collect()
}

/// A vector (a list of numbers), a document (`{"text", "model"}`), or either under the default name `""`.
fn vector_input(v: &Value, at: &str) -> Result<VectorInput, QdrantError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(j, x)| {
                x.as_f64().map(|x| x as f32).ok_or_else(|| invalid(format!("{at}[{j}] is not a number: {x}")))
            })
            .collect::<Result<Vec<f32>, _>>()
            .map(VectorInput::Vector),
        Value::Object(o) if o.contains_key("text") => {
            let text =
                o.get("text").and_then(Value::as_str).ok_or_else(|| invalid(format!("{at}.text must be a string")))?;
            if text.is_empty() {
                return Err(invalid(format!("{at}.text is empty")));
            }
            // No model (or an empty one): the collection's `embedding_model`.
            let model = o.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_string);
            Ok(VectorInput::Text { text: text.to_string(), model })
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("") => vector_input(&o[""], at),
        Value::Object(_) => {
            Err(invalid(format!("{at}: named vectors are not supported; send a list of numbers or a document")))
        }
        Value::Null => Err(invalid(format!("{at} is missing"))),
        other => Err(invalid(format!("{at} must be a list of numbers or a document, got {other}"))),
    }
}

fn payload(v: Option<&Value>, at: &str) -> Result<Payload, QdrantError> {
    match v {
        None | Some(Value::Null) => Ok(Payload::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(other) => Err(invalid(format!("{at} must be an object, got {other}"))),
    }
}

fn optional_str(body: &Value, key: &str) -> Result<Option<String>, QdrantError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!("{key} must be a string, got {other}"))),
    }
}

fn ids(v: &Value, at: &str) -> Result<Vec<PointId>, QdrantError> {
    let Value::Array(items) = v else { return Err(invalid(format!("{at} must be a list of point ids"))) };
    items
        .iter()
        .enumerate()
        .map(|(i, id)| PointId::from_json(id).map_err(|e| invalid(format!("{at}[{i}]: {e}"))))
        .collect()
}

fn filter(body: &Value) -> Result<Option<Filter>, QdrantError> {
    Filter::parse(body.get("filter").unwrap_or(&Value::Null)).map_err(invalid)
}

/// `with_payload`: a boolean, a list of keys, or `{"include": [...]}` / `{"exclude": [...]}`.
fn payload_selector(v: Option<&Value>, default: bool) -> Result<PayloadSelector, QdrantError> {
    let keys = |v: &Value| -> Result<Vec<String>, QdrantError> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .ok_or_else(|| invalid("with_payload: include/exclude take a list of keys"))
    };
    Ok(match v {
        None | Some(Value::Null) => PayloadSelector::from_bool(default),
        Some(Value::Bool(b)) => PayloadSelector::from_bool(*b),
        Some(v @ Value::Array(_)) => PayloadSelector::Include(keys(v)?),
        Some(Value::Object(o)) if o.contains_key("include") => PayloadSelector::Include(keys(&o["include"])?),
        Some(Value::Object(o)) if o.contains_key("exclude") => PayloadSelector::Exclude(keys(&o["exclude"])?),
        Some(other) => return Err(invalid(format!("with_payload must be a boolean or a list of keys, got {other}"))),
    })
}

fn shown(selector: &PayloadSelector, payload: Option<Payload>) -> Value {
    selector.apply(payload).map_or(Value::Null, Value::Object)
}

fn with_vector(body: &Value) -> bool {
    match body.get("with_vector").or_else(|| body.get("with_vectors")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Array(names)) => !names.is_empty(),
        _ => false,
    }
}

fn record_json(r: Record, selector: &PayloadSelector) -> Value {
    json!({"id": r.id, "payload": shown(selector, r.payload), "vector": vector_json(r.vector.as_deref()),
           "shard_key": null, "order_value": null})
}

fn scored_json(s: Scored, selector: &PayloadSelector) -> Value {
    let Scored { record, score } = s;
    json!({"id": record.id, "version": record.version, "score": f32_number(score),
           "payload": shown(selector, record.payload), "vector": vector_json(record.vector.as_deref())})
}

/// A point's vector as JSON floats in their shortest form (`null` when not asked for).
fn vector_json(vector: Option<&[f32]>) -> Value {
    vector.map_or(Value::Null, f32_numbers)
}

/// Points by id.
#[utoipa::path(post, path = "/collections/{name}/points", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")), request_body = GetPoints,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<Vec<PointRecord>>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn get_points(State(state): State<AppState>, Path(name): Path<String>, JsonBody(body, _): Body) -> Answer {
    let started = Instant::now();
    let wanted = ids(body.get("ids").unwrap_or(&Value::Null), "ids")?;
    let selector = payload_selector(body.get("with_payload"), true)?;
    let records = state.engine.get_points(&name, &wanted, selector.wants(), with_vector(&body))?;
    ok(started, Value::Array(records.into_iter().map(|r| record_json(r, &selector)).collect()))
}

/// `points` (ids) or `filter` of a delete or payload request.
fn selection(body: &Value) -> Result<(Option<Vec<PointId>>, Option<Filter>), QdrantError> {
    let points = match body.get("points") {
        None | Some(Value::Null) => None,
        Some(v) => Some(ids(v, "points")?),
    };
    Ok((points, filter(body)?))
}

/// Deletes points by id or by filter.
#[utoipa::path(post, path = "/collections/{name}/points/delete", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection"), ("wait" = Option<bool>, Query, description = "Answer after the write is applied (default); false: once it is in the write-ahead log")), request_body = PointsSelector,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<UpdateResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn delete_points(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Wait(wait): Wait,
    JsonBody(body, _): Body,
) -> Answer {
    let started = Instant::now();
    let (points, filter) = selection(&body)?;
    let version = state.engine.delete_points(&name, points, filter).await?;
    update_result(started, version, wait)
}

async fn payload_update(state: AppState, name: String, wait: Option<bool>, body: Value, overwrite: bool) -> Answer {
    let started = Instant::now();
    let (points, filter) = selection(&body)?;
    let patch = match body.get("payload") {
        Some(Value::Object(o)) => o.clone(),
        _ => return Err(invalid("payload must be an object")),
    };
    let version = state.engine.set_payload(&name, points, filter, patch, overwrite).await?;
    update_result(started, version, wait)
}

/// Merges keys into the payload of points chosen by id or filter.
#[utoipa::path(post, path = "/collections/{name}/points/payload", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection"), ("wait" = Option<bool>, Query, description = "Answer after the write is applied (default); false: once it is in the write-ahead log")), request_body = SetPayload,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<UpdateResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn set_payload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Wait(wait): Wait,
    JsonBody(body, _): Body,
) -> Answer {
    payload_update(state, name, wait, body, false).await
}

/// Replaces the payload of points chosen by id or filter.
#[utoipa::path(put, path = "/collections/{name}/points/payload", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection"), ("wait" = Option<bool>, Query, description = "Answer after the write is applied (default); false: once it is in the write-ahead log")), request_body = SetPayload,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<UpdateResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn overwrite_payload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Wait(wait): Wait,
    JsonBody(body, _): Body,
) -> Answer {
    payload_update(state, name, wait, body, true).await
}

fn usize_field(body: &Value, key: &str, default: usize) -> Result<usize, QdrantError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| invalid(format!("{key} must be a non-negative integer, got {v}"))),
    }
}

/// Pages through points in id order, optionally filtered.
#[utoipa::path(post, path = "/collections/{name}/points/scroll", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")), request_body = ScrollRequest,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<ScrollResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn scroll(State(state): State<AppState>, Path(name): Path<String>, JsonBody(body, _): Body) -> Answer {
    let started = Instant::now();
    if body.get("order_by").is_some_and(|v| !v.is_null()) {
        return Err(invalid("order_by is not supported: points scroll in id order"));
    }
    let limit = usize_field(&body, "limit", 10)?;
    let offset = match body.get("offset") {
        None | Some(Value::Null) => None,
        Some(v) => Some(PointId::from_json(v).map_err(|e| invalid(format!("offset: {e}")))?),
    };
    let selector = payload_selector(body.get("with_payload"), true)?;
    let (records, next) =
        state.engine.scroll_points(&name, offset, limit, filter(&body)?, selector.wants(), with_vector(&body)).await?;
    let points: Vec<Value> = records.into_iter().map(|r| record_json(r, &selector)).collect();
    ok(started, json!({"points": points, "next_page_offset": next}))
}

/// Counts points, optionally filtered.
#[utoipa::path(post, path = "/collections/{name}/points/count", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")), request_body = CountRequest,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<CountResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn count(State(state): State<AppState>, Path(name): Path<String>, JsonBody(body, _): Body) -> Answer {
    let started = Instant::now();
    let count = state.engine.count_points(&name, filter(&body)?).await?;
    ok(started, json!({"count": count}))
}

/// One query request (`/points/query`, and each of `/points/query/batch`): the points and how to show them.
async fn run_query(state: &AppState, name: &str, body: &Value) -> Result<Value, QdrantError> {
    for unsupported in ["prefetch", "lookup_from", "group_by"] {
        if body.get(unsupported).is_some_and(|v| !v.is_null()) {
            return Err(invalid(format!("{unsupported} is not supported")));
        }
    }
    if body.get("using").and_then(Value::as_str).is_some_and(|u| !u.is_empty()) {
        return Err(invalid("using: named vectors are not supported"));
    }
    let query = match body.get("query") {
        Some(Value::Object(o)) if o.contains_key("nearest") => &o["nearest"],
        Some(q) => q,
        None => return Err(invalid("query is missing")),
    };
    let query = match query {
        Value::Number(_) | Value::String(_) => {
            QueryInput::Point(PointId::from_json(query).map_err(|e| invalid(format!("query: {e}")))?)
        }
        v => QueryInput::Vector(vector_input(v, "query")?),
    };
    let selector = payload_selector(body.get("with_payload"), false)?;
    let params = body.get("params");
    let search = Search {
        vector: Vec::new(),
        limit: usize_field(body, "limit", 10)?,
        offset: usize_field(body, "offset", 0)?,
        filter: filter(body)?,
        score_threshold: body.get("score_threshold").and_then(Value::as_f64).map(|t| t as f32),
        ef: params.and_then(|p| p.get("hnsw_ef")).and_then(Value::as_u64).map(|n| n as usize),
        exact: params.and_then(|p| p.get("exact")).and_then(Value::as_bool).unwrap_or(false),
        quantization: quantization_search(params.and_then(|p| p.get("quantization")))?,
        with_payload: selector.wants(),
        with_vector: with_vector(body),
    };
    let hits = state.engine.query_points(name, query, search).await?;
    Ok(json!({"points": hits.into_iter().map(|h| scored_json(h, &selector)).collect::<Vec<_>>()}))
}

/// Nearest neighbours of a vector, a text or a point, with filters.
#[utoipa::path(post, path = "/collections/{name}/points/query", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")), request_body = QueryRequest,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<QueryResult>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn query(State(state): State<AppState>, Path(name): Path<String>, JsonBody(body, _): Body) -> Answer {
    let started = Instant::now();
    let result = run_query(&state, &name, &body).await?;
    ok(started, result)
}

/// Several queries in one request.
#[utoipa::path(post, path = "/collections/{name}/points/query/batch", tag = "Collections (Qdrant)", params(("name" = String, Path, description = "The collection")), request_body = QueryBatch,
    responses((status = 200, description = "Qdrant's envelope", body = QdrantAnswer<Vec<QueryResult>>),
              (status = "4XX", description = "No such collection, or a request the collection refuses", body = QdrantErrorBody),
              (status = "5XX", description = "Storage failed, or the embedding model did", body = QdrantErrorBody)))]
pub async fn query_batch(State(state): State<AppState>, Path(name): Path<String>, JsonBody(body, _): Body) -> Answer {
    let started = Instant::now();
    let Some(Value::Array(searches)) = body.get("searches") else { return Err(invalid("searches must be a list")) };
    let mut results = Vec::with_capacity(searches.len());
    for s in searches {
        results.push(run_query(&state, &name, s).await?);
    }
    ok(started, Value::Array(results))
}
