//! The wire shapes of the REST API that handlers write or read as JSON values rather than typed structs
//! (Qdrant's and KServe's bodies, the LangServe envelope, responses built with `json!`), described for the
//! OpenAPI document (`openapi.rs`). Typed request and response structs derive their schemas where they are
//! defined; these types only describe, they are never built. `schemathesis` in `make test` checks every
//! response against them, so a handler that drifts from its shape fails the suite.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

// ---- Errors, one shape per API family ----

/// OpenAI's error object (also `/admin`).
#[derive(ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

#[derive(ToSchema)]
pub struct OpenAiErrorDetail {
    /// What is wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    /// A stable machine-readable code (`model_not_found`, `input_too_long`, `overloaded`, ...).
    pub code: Option<String>,
}

/// TEI's error: a message and its class.
#[derive(ToSchema)]
pub struct TeiErrorBody {
    pub error: String,
    /// `Validation`, `NotFound`, `Overloaded`, `Unhealthy` or `Backend`.
    pub error_type: String,
}

/// Qdrant's error envelope.
#[derive(ToSchema)]
pub struct QdrantErrorBody {
    pub status: QdrantErrorStatus,
    pub time: f64,
}

#[derive(ToSchema)]
pub struct QdrantErrorStatus {
    pub error: String,
}

/// KServe v2's error.
#[derive(ToSchema)]
pub struct KserveErrorBody {
    pub error: String,
}

/// LangServe's (FastAPI's) error.
#[derive(ToSchema)]
pub struct LangServeErrorBody {
    pub detail: String,
}

// ---- Shared request fields ----

/// How a request uses the caches: read and write (`default`), neither (`skip`), recompute and overwrite
/// (`refresh`), or answer only from the cache, 404 on a miss (`only`).
#[derive(ToSchema)]
#[schema(as = CacheMode)]
#[serde(rename_all = "lowercase")]
pub enum CacheModeSchema {
    Default,
    Skip,
    Refresh,
    Only,
}

/// One text or a list of texts (none empty).
pub struct TextOrTexts;

impl PartialSchema for TextOrTexts {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new().item(text()).item(ArrayBuilder::new().items(text()).min_items(Some(1))).into()
    }
}

impl ToSchema for TextOrTexts {}

/// Stop strings: one, or a list of up to 16 (none empty).
pub struct StopStrings;

impl PartialSchema for StopStrings {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new().item(text()).item(ArrayBuilder::new().items(text()).max_items(Some(16))).into()
    }
}

impl ToSchema for StopStrings {}

/// A logit bias, from -100 (ban the token) to 100 (force it).
pub struct LogitBias;

impl PartialSchema for LogitBias {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-100.0)).maximum(Some(100.0)).into()
    }
}

impl ToSchema for LogitBias {}

/// A string that is not empty.
fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1))
}

/// A chat message's author.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// A vector as floats, or as base64 of its little-endian f32 bytes.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum FloatsOrBase64 {
    Floats(Vec<f32>),
    Base64(String),
}

/// A message's content: text, or a list of text parts.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<TextPart>),
}

#[derive(ToSchema)]
pub struct TextPart {
    #[serde(rename = "type")]
    pub kind: TextPartType,
    pub text: String,
}

/// Only text parts.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPartType {
    Text,
}

/// One server-sent event of a `text/event-stream` answer.
#[derive(ToSchema)]
pub struct SseEvent {
    /// The event's type (LangServe: `metadata`, `data`, `error`, `end`); absent in OpenAI's streams.
    pub event: Option<String>,
    /// The event's JSON (OpenAI ends with `[DONE]`).
    pub data: String,
    pub id: Option<String>,
}

// ---- Health, models, caches ----

#[derive(ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

#[derive(ToSchema)]
pub struct Readiness {
    /// Every model is loaded.
    pub ready: bool,
    pub models: Vec<ModelState>,
}

#[derive(ToSchema)]
pub struct ModelState {
    pub name: String,
    pub ready: bool,
    /// `loading`, `ready`, `failed`, `unloaded`, ...
    pub state: String,
    /// Why the model failed to load (no file paths).
    pub error: Option<String>,
}

#[derive(ToSchema)]
pub struct ModelStatusList {
    pub models: Vec<ModelStatus>,
}

/// A model of the repository as the web console shows it.
#[derive(ToSchema)]
pub struct ModelStatus {
    pub name: String,
    /// `embedding`, `generation` or `tensor`.
    pub task: String,
    /// The backends of its lanes: `candle`, `onnx`, or `onnx+candle`.
    pub backend: String,
    /// `loading`, `ready`, `failed` or `unloaded`.
    pub state: String,
    /// Why the model failed to load.
    pub error: Option<String>,
    /// Weight format as configured: `f32`, `f16`, `q8_0`, `q4_1`, `stored`, ...
    pub dtype: String,
    /// Bytes of the weight file, once loaded.
    pub bytes: Option<u64>,
    pub dimensions: Option<usize>,
    pub max_input_tokens: Option<usize>,
    pub lanes: Vec<LaneStatus>,
}

#[derive(ToSchema)]
pub struct LaneStatus {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// `candle` or `onnx`.
    pub backend: String,
    /// Compute threads of the lane's own pool; 0 on the shared ONNX Runtime pool or a GPU.
    pub threads: usize,
    pub max_batch_size: Option<usize>,
}

#[derive(ToSchema)]
pub struct BenchRunList {
    /// The results folder (`ui.bench_results`); `null` when none is configured.
    pub folder: Option<String>,
    pub runs: Vec<BenchRunSchema>,
}

/// One `ferroserve bench` run: a folder with its table and plots.
#[derive(ToSchema)]
pub struct BenchRunSchema {
    pub name: String,
    /// `variants` or `load`.
    pub kind: String,
    pub modified_unix: u64,
    /// `variants.csv` or `load.csv`.
    pub csv: String,
    /// Plot files (`/bench/runs/{run}/{file}`).
    pub plots: Vec<String>,
}

/// OpenAI's model list: the ready models the caller's key may use.
#[derive(ToSchema)]
pub struct ModelList {
    /// `list`
    pub object: String,
    pub data: Vec<ModelCard>,
}

#[derive(ToSchema)]
pub struct ModelCard {
    pub id: String,
    /// `model`
    pub object: String,
    /// Unix seconds of the server's start.
    pub created: u64,
    pub owned_by: String,
}

/// Bytes and entries of one cache.
#[derive(ToSchema)]
pub struct CacheUsage {
    pub bytes: u64,
    pub entries: u64,
}

#[derive(ToSchema)]
pub struct CacheUsageReport {
    /// `null` when the embedding cache is off.
    pub embedding: Option<CacheUsage>,
    /// `null` when the response cache is off.
    pub response: Option<CacheUsage>,
    /// Per generation model with a semantic cache.
    pub semantic: BTreeMap<String, CacheUsage>,
}

#[derive(ToSchema)]
pub struct Invalidated {
    /// What was dropped, in words.
    pub invalidated: String,
    /// Entries deleted from the shared (Redis) cache, when there is one.
    pub shared_deleted: Option<u64>,
    /// Why the shared cache could not be reached, when it could not.
    pub shared_error: Option<String>,
}

// ---- A/B routes ----

/// A model and its relative share of an alias's traffic.
#[derive(ToSchema)]
pub struct RouteVariant {
    pub model: String,
    #[schema(minimum = 0.0)]
    pub weight: f64,
}

/// A candidate that also receives `share` of the alias's requests, off the request path.
#[derive(ToSchema)]
pub struct RouteShadow {
    pub model: String,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub share: f64,
}

#[derive(ToSchema)]
#[schema(as = Route)]
pub struct RouteSchema {
    pub alias: String,
    pub variants: Vec<RouteVariant>,
    pub shadow: Option<RouteShadow>,
}

#[derive(ToSchema)]
pub struct RouteList {
    pub routes: Vec<RouteSchema>,
}

#[derive(ToSchema)]
pub struct RouteRemoved {
    pub alias: String,
    /// `removed`
    pub status: String,
}

// ---- OpenAI completions ----

#[derive(ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV entries came from the prefix cache.
    pub cached_tokens: u64,
}

/// `chat.completion` (not streamed; a stream is `text/event-stream` of `chat.completion.chunk` objects).
#[derive(ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: CompletionUsage,
}

#[derive(ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}` when logprobs were asked for.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop` or `length`.
    pub finish_reason: String,
}

#[derive(ToSchema)]
pub struct AssistantMessage {
    /// `assistant`
    pub role: String,
    pub content: String,
}

/// `text_completion` (not streamed).
#[derive(ToSchema)]
pub struct TextCompletion {
    pub id: String,
    /// `text_completion`
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    pub usage: CompletionUsage,
}

#[derive(ToSchema)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    /// `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}` when logprobs were asked for.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: String,
}

// ---- Qdrant ----

/// Qdrant's answer envelope.
#[derive(ToSchema)]
pub struct QdrantAnswer<T> {
    pub result: T,
    /// `ok`
    pub status: String,
    /// Seconds the server spent.
    pub time: f64,
}

#[derive(ToSchema)]
pub struct QdrantRoot {
    pub title: String,
    /// The Qdrant API version this server follows.
    pub version: String,
}

#[derive(ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionName>,
}

#[derive(ToSchema)]
pub struct CollectionName {
    pub name: String,
}

#[derive(ToSchema)]
pub struct CollectionExists {
    pub exists: bool,
}

/// Creates a collection. Give `embedding_model` (here or in `metadata`) to let it take texts; `vectors` may
/// then be left out (the model's dimension, Cosine).
#[derive(ToSchema)]
#[schema(example = json!({"vectors": {"size": 384, "distance": "Cosine"}, "embedding_model": "all-MiniLM-L6-v2"}))]
pub struct CreateCollection {
    pub vectors: Option<VectorParams>,
    pub hnsw_config: Option<HnswConfig>,
    pub quantization_config: Option<QuantizationConfig>,
    /// ferroserve: the embedding model that turns texts into this collection's vectors.
    pub embedding_model: Option<String>,
    /// Free-form; `embedding_model` is read from here too.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(ToSchema)]
pub struct VectorParams {
    #[schema(minimum = 1)]
    pub size: u64,
    pub distance: Distance,
    /// Vectors kept in a memory-mapped file instead of RAM.
    pub on_disk: Option<bool>,
    pub quantization_config: Option<QuantizationConfig>,
}

#[derive(ToSchema)]
pub enum Distance {
    Cosine,
    Dot,
    Euclid,
}

#[derive(ToSchema)]
pub struct HnswConfig {
    pub m: Option<u64>,
    pub ef_construct: Option<u64>,
    /// Below this many candidate points a filtered search scans exactly.
    pub full_scan_threshold: Option<u64>,
}

/// Scalar INT8 quantization of stored vectors, with full-precision rescoring.
#[derive(ToSchema)]
pub struct QuantizationConfig {
    pub scalar: ScalarQuantization,
}

#[derive(ToSchema)]
pub struct ScalarQuantization {
    /// `int8`
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(minimum = 0.5, maximum = 1.0)]
    pub quantile: Option<f32>,
    pub always_ram: Option<bool>,
}

#[derive(ToSchema)]
pub struct CollectionInfo {
    /// `green`, or `yellow` while the graph is rebuilt.
    pub status: String,
    pub optimizer_status: String,
    pub points_count: u64,
    pub indexed_vectors_count: u64,
    pub segments_count: u64,
    /// `params` (vectors), `hnsw_config`, `optimizer_config`, `wal_config`, `quantization_config`, `metadata`.
    #[schema(value_type = Object)]
    pub config: Value,
    #[schema(value_type = Object)]
    pub payload_schema: Value,
    /// ferroserve: points in the graph, tombstones included.
    pub graph_points_count: u64,
    pub memory_bytes: u64,
    pub graph_memory_bytes: u64,
    pub disk_vector_bytes: u64,
    pub embedding_model: Option<String>,
}

#[derive(ToSchema)]
pub struct SnapshotDescription {
    pub name: String,
    pub creation_time: Option<String>,
    pub size: u64,
}

#[derive(ToSchema)]
pub struct UpdateResult {
    pub operation_id: u64,
    /// `completed`, or `acknowledged` with `wait=false`.
    pub status: String,
}

/// A point id: an unsigned integer or a UUID.
#[derive(ToSchema)]
#[schema(as = PointId)]
#[serde(untagged)]
pub enum PointIdSchema {
    #[schema(value_type = u64)]
    Num(u64),
    #[schema(value_type = String, format = "uuid")]
    Uuid(String),
}

/// A vector, or a text for the collection's (or the named) embedding model.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum VectorInput {
    Vector(Vec<f32>),
    Document(Document),
}

/// A text the server embeds (`QdrantClient(cloud_inference=True)` sends these).
#[derive(ToSchema)]
pub struct Document {
    #[schema(min_length = 1)]
    pub text: String,
    /// An embedding model; absent: the collection's.
    pub model: Option<String>,
}

#[derive(ToSchema)]
pub struct PointStruct {
    pub id: PointIdSchema,
    pub vector: VectorInput,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

/// Upsert: `points`, or the columns of `batch`.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum UpsertPoints {
    Points(PointList),
    Batch(PointColumns),
}

#[derive(ToSchema)]
#[schema(example = json!({"points": [{"id": 1, "vector": {"text": "a cat sat on the mat"}, "payload": {"topic": "pets"}}]}))]
pub struct PointList {
    #[schema(min_items = 1)]
    pub points: Vec<PointStruct>,
}

#[derive(ToSchema)]
pub struct PointColumns {
    pub batch: PointBatch,
}

#[derive(ToSchema)]
pub struct PointBatch {
    #[schema(min_items = 1)]
    pub ids: Vec<PointIdSchema>,
    pub vectors: Vec<VectorInput>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub payloads: Option<Vec<Value>>,
}

/// Payload to show: all (`true`), none (`false`), these keys, or `{"include"}` / `{"exclude"}`.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum WithPayload {
    All(bool),
    Keys(Vec<String>),
    Include(IncludeKeys),
    Exclude(ExcludeKeys),
}

#[derive(ToSchema)]
pub struct IncludeKeys {
    pub include: Vec<String>,
}

#[derive(ToSchema)]
pub struct ExcludeKeys {
    pub exclude: Vec<String>,
}

#[derive(ToSchema)]
pub struct GetPoints {
    pub ids: Vec<PointIdSchema>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<bool>,
}

/// A payload filter: every `must`, at least one `should`, no `must_not`.
#[derive(ToSchema)]
pub struct Filter {
    pub must: Option<Vec<Condition>>,
    pub should: Option<Vec<Condition>>,
    pub must_not: Option<Vec<Condition>>,
}

/// One condition: on a payload key, on emptiness, on ids, or a nested filter.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum Condition {
    Field(FieldCondition),
    IsEmpty(IsEmptyCondition),
    IsNull(IsNullCondition),
    HasId(HasIdCondition),
    #[schema(no_recursion)]
    Nested(Filter),
}

/// A dotted payload key and a `match` or a `range`.
#[derive(ToSchema)]
pub struct FieldCondition {
    pub key: String,
    /// `{"value"}`, `{"any": [...]}`, `{"except": [...]}` or `{"text"}`.
    #[serde(rename = "match")]
    #[schema(value_type = Option<Object>)]
    pub matches: Option<Value>,
    pub range: Option<RangeBounds>,
}

#[derive(ToSchema)]
pub struct RangeBounds {
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

#[derive(ToSchema)]
pub struct PayloadKey {
    pub key: String,
}

#[derive(ToSchema)]
pub struct IsEmptyCondition {
    pub is_empty: PayloadKey,
}

#[derive(ToSchema)]
pub struct IsNullCondition {
    pub is_null: PayloadKey,
}

#[derive(ToSchema)]
pub struct HasIdCondition {
    pub has_id: Vec<PointIdSchema>,
}

/// Delete by ids (`points`) or by `filter`.
#[derive(ToSchema)]
pub struct PointsSelector {
    pub points: Option<Vec<PointIdSchema>>,
    pub filter: Option<Filter>,
}

/// Set (merge) or overwrite the payload of points chosen by ids or a filter.
#[derive(ToSchema)]
pub struct SetPayload {
    #[schema(value_type = Object)]
    pub payload: Value,
    pub points: Option<Vec<PointIdSchema>>,
    pub filter: Option<Filter>,
}

#[derive(ToSchema)]
pub struct ScrollRequest {
    pub limit: Option<u64>,
    /// The `next_page_offset` of the previous page.
    pub offset: Option<PointIdSchema>,
    pub filter: Option<Filter>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<bool>,
}

#[derive(ToSchema)]
pub struct CountRequest {
    pub filter: Option<Filter>,
    /// Always exact here.
    pub exact: Option<bool>,
}

#[derive(ToSchema)]
pub struct CountResult {
    pub count: u64,
}

/// A nearest-neighbour query: a vector, a text (`{"text"}`), an existing point's id, or `{"nearest": ...}`.
#[derive(ToSchema)]
#[schema(example = json!({"query": {"text": "animals"}, "limit": 3, "with_payload": true, "filter": {"must": [{"key": "topic", "match": {"value": "pets"}}]}}))]
pub struct QueryRequest {
    pub query: QueryInput,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub filter: Option<Filter>,
    pub score_threshold: Option<f64>,
    pub params: Option<SearchParams>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<bool>,
}

/// What to find neighbours of: a vector, a text, an existing point (by id), or any of them under `nearest`.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum QueryInput {
    Vector(Vec<f32>),
    Document(Document),
    Point(PointIdSchema),
    Nearest(NearestQuery),
}

#[derive(ToSchema)]
pub struct NearestQuery {
    pub nearest: VectorInput,
}

#[derive(ToSchema)]
pub struct SearchParams {
    /// Candidates kept while walking the graph (higher: better recall, slower).
    pub hnsw_ef: Option<u64>,
    /// Scan every point instead of the graph.
    pub exact: Option<bool>,
    pub quantization: Option<QuantizationSearch>,
}

#[derive(ToSchema)]
pub struct QuantizationSearch {
    pub ignore: Option<bool>,
    pub rescore: Option<bool>,
    #[schema(minimum = 1.0)]
    pub oversampling: Option<f64>,
}

#[derive(ToSchema)]
pub struct QueryBatch {
    pub searches: Vec<QueryRequest>,
}

#[derive(ToSchema)]
#[schema(as = Record)]
pub struct PointRecord {
    pub id: PointIdSchema,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub vector: Option<Vec<f32>>,
    #[schema(value_type = Option<String>)]
    pub shard_key: Option<Value>,
    #[schema(value_type = Option<f64>)]
    pub order_value: Option<Value>,
}

#[derive(ToSchema)]
pub struct ScrollResult {
    pub points: Vec<PointRecord>,
    /// The offset of the next page; `null` on the last.
    pub next_page_offset: Option<PointIdSchema>,
}

#[derive(ToSchema)]
pub struct ScoredPoint {
    pub id: PointIdSchema,
    pub version: u64,
    pub score: f32,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub vector: Option<Vec<f32>>,
}

#[derive(ToSchema)]
pub struct QueryResult {
    pub points: Vec<ScoredPoint>,
}

// ---- KServe v2 ----

#[derive(ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[derive(ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    /// `BOOL`, `UINT8`–`UINT64`, `INT8`–`INT64`, `FP16`, `FP32`, `FP64` or `BYTES`.
    pub datatype: String,
    /// -1 for a dimension of any size.
    pub shape: Vec<i64>,
}

#[derive(ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// An inference request (JSON). With Triton's binary extension the body is this JSON followed by raw
/// tensors (`Inference-Header-Content-Length` says where the JSON ends).
#[derive(ToSchema)]
#[schema(example = json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a cat sat on the mat"]}]}))]
pub struct InferRequest {
    pub id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    pub inputs: Vec<InferInput>,
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(ToSchema)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// `binary_data_size` when the tensor's bytes follow the JSON.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// The elements, flat or nested, in row-major order (strings for `BYTES`).
    pub data: Option<Value>,
}

#[derive(ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    /// `binary_data`: this output as raw bytes after the JSON.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

#[derive(ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<InferOutput>,
}

#[derive(ToSchema)]
pub struct InferOutput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// The elements, flat, when not sent as binary.
    pub data: Option<Value>,
}

#[derive(ToSchema)]
pub struct RepositoryIndexRequest {
    /// Only the models that are ready.
    pub ready: Option<bool>,
}

#[derive(ToSchema)]
pub struct RepositoryEntry {
    pub name: String,
    pub version: String,
    /// `READY`, `LOADING`, `UNAVAILABLE`, ...
    pub state: String,
    pub reason: String,
}

/// Load and unload answer an empty object.
#[derive(ToSchema)]
pub struct Empty {}

#[derive(ToSchema)]
pub struct ModelStatistics {
    pub model_stats: Vec<ModelStat>,
}

#[derive(ToSchema)]
pub struct ModelStat {
    pub name: String,
    pub version: String,
    /// Unix milliseconds of the last inference (0: none yet).
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    /// `success`, `fail`, `queue`, `compute_input`, `compute_infer`, `compute_output`, `cache_hit`,
    /// `cache_miss`: each `{"count", "ns"}`.
    pub inference_stats: BTreeMap<String, StatDuration>,
    #[schema(value_type = Vec<Object>)]
    pub batch_stats: Vec<Value>,
}

#[derive(ToSchema)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

/// Triton's model configuration.
#[derive(ToSchema)]
pub struct ModelConfig {
    pub name: String,
    pub platform: String,
    pub max_batch_size: u64,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
}

#[derive(ToSchema)]
pub struct ConfigTensor {
    pub name: String,
    /// `TYPE_FP32`, `TYPE_STRING`, ...
    pub data_type: String,
    pub dims: Vec<i64>,
}

// ---- LangServe and chains ----

#[derive(ToSchema)]
pub struct RunMetadata {
    pub run_id: String,
    #[schema(value_type = Vec<Object>)]
    pub feedback_tokens: Vec<Value>,
    pub steps: Vec<StepTiming>,
}

#[derive(ToSchema)]
pub struct StepTiming {
    pub name: String,
    /// `prompt`, `retrieve`, `generate`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub seconds: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(ToSchema)]
pub struct InvokeResponse {
    /// The chain's output (its `output_schema`), with LangChain's `type` tags.
    pub output: Value,
    pub metadata: RunMetadata,
}

#[derive(ToSchema)]
pub struct BatchResponse {
    pub output: Vec<Value>,
    pub metadata: BatchMetadata,
}

#[derive(ToSchema)]
pub struct BatchMetadata {
    pub run_ids: Vec<String>,
    pub responses: Vec<RunMetadata>,
}

#[derive(ToSchema)]
pub struct ChainList {
    pub chains: Vec<ChainSummary>,
}

#[derive(ToSchema)]
pub struct ChainSummary {
    pub name: String,
    pub description: Option<String>,
    /// Number of steps.
    pub steps: u64,
}

#[derive(ToSchema)]
pub struct ChainDefinition {
    pub name: String,
    /// The same fields as a chain's TOML file.
    #[schema(value_type = Object)]
    pub definition: Value,
}

#[derive(ToSchema)]
pub struct ChainStatus {
    pub name: String,
    /// `registered` or `deleted`.
    pub status: String,
}
