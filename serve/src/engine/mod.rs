//! The engine: the one place that owns served models and answers requests. Transports (HTTP, gRPC) are thin
//! adapters over it. Models load in the background so the process is live (and `/health` answers) at once
//! and becomes ready when every model has loaded.

mod chains;
mod embeddings;
mod error;
mod generate;
mod meta;
mod repository;
mod routes;
mod tensors;
mod vectors;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ferroserve_models::cpu_share::CpuShare;
use ferroserve_models::llm::load_language_model;
use ferroserve_models::{DeviceSpec, EmbedderInfo, ModelError, Task, load_embedder};

use crate::batching::{BatchLimits, BatchQueue, LaneConfig, LaneSpec};
use crate::cache::{CacheConfig, CacheUsage, Caches, Invalidated};
use crate::generation::Generator;
use crate::repository::ModelEntry;
use crate::threads::ThreadBudget;
use crate::vectors::{Collections, VectorsConfig, cosine_f64};

pub use chains::{ChainStream, RunOutput, StepReport};
pub use embeddings::{EmbedOutput, EmbedRequest, Truncate};
pub use error::{EngineError, without_paths};
pub use generate::{GenerateRequest, GenerationStream};
pub use meta::ResponseMeta;
pub use repository::IndexEntry;
pub use tensors::{InferData, InferParams, InferStats, InferTensor, Signature, datatype, element_type, triton_type};
pub use vectors::{CollectionSpec, PointWrite, QueryInput, VectorInput};

/// Request limits that apply to every model.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    pub max_client_batch_size: usize,
    /// Most MiB of model weights loaded at once (0: no limit); loading through the repository API unloads the
    /// least recently used models to make room.
    pub max_loaded_mb: u64,
}

/// A loaded model and what runs it.
pub struct ServedModel {
    pub name: String,
    pub entry: ModelEntry,
    runtime: Runtime,
    /// Bytes of its weight file (what the memory budget counts).
    bytes: u64,
    /// Its config and weight file as loaded, to notice changes.
    fingerprint: String,
    /// Milliseconds since the epoch of the last request.
    last_used: std::sync::atomic::AtomicU64,
}

/// What identifies a model's files as loaded: its settings, and its weight file's size and time.
fn fingerprint(entry: &ModelEntry) -> String {
    let weights = std::fs::metadata(entry.model.weights_path()).ok();
    format!("{entry:?}|{:?}|{:?}", weights.as_ref().map(|m| m.len()), weights.and_then(|m| m.modified().ok()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

enum Runtime {
    /// Lanes pulling batches from one queue.
    Embedding { info: Box<EmbedderInfo>, queue: BatchQueue },
    /// A continuous-batching scheduler.
    Generation(Generator),
    /// An ONNX graph behind its dynamic batcher.
    Tensor(Arc<crate::batching::TensorBatcher>),
}

impl ServedModel {
    fn new(name: String, entry: ModelEntry, runtime: Runtime) -> Self {
        let bytes = std::fs::metadata(entry.model.weights_path()).map_or(0, |m| m.len());
        let fingerprint = fingerprint(&entry);
        ServedModel { name, entry, runtime, bytes, fingerprint, last_used: std::sync::atomic::AtomicU64::new(now_ms()) }
    }

    fn embedding(&self) -> Result<(&EmbedderInfo, &BatchQueue), EngineError> {
        match &self.runtime {
            Runtime::Embedding { info, queue } => Ok((info, queue)),
            Runtime::Generation(_) => Err(EngineError::InvalidInput(format!(
                "model {:?} generates text and has no embeddings; use /v1/completions or /v1/chat/completions",
                self.name
            ))),
            Runtime::Tensor(_) => Err(EngineError::InvalidInput(format!(
                "model {:?} is a tensor model and has no embeddings; use /v2/models/{}/infer",
                self.name, self.name
            ))),
        }
    }

    fn tensor(&self) -> Result<&Arc<crate::batching::TensorBatcher>, EngineError> {
        match &self.runtime {
            Runtime::Tensor(t) => Ok(t),
            _ => Err(EngineError::InvalidInput(format!(
                "model {:?} takes texts, not tensors: send BYTES inputs",
                self.name
            ))),
        }
    }

    fn generator(&self) -> Result<&Generator, EngineError> {
        match &self.runtime {
            Runtime::Generation(g) => Ok(g),
            Runtime::Embedding { .. } | Runtime::Tensor(_) => Err(EngineError::InvalidInput(format!(
                "model {:?} cannot generate text (its task is {})",
                self.name,
                self.entry.model.task.as_str()
            ))),
        }
    }

    /// A request's priority and deadline: its own or the model's defaults, checked against the model's
    /// priority levels.
    fn schedule(&self, priority: Option<u8>, timeout: Option<Duration>) -> Result<(u8, Option<Instant>), EngineError> {
        let batching = &self.entry.batching;
        let priority = priority.unwrap_or(batching.default_priority);
        if priority >= batching.priority_levels {
            return Err(EngineError::InvalidInput(format!(
                "priority {priority} is out of range: model {:?} has levels 0 (first) to {}",
                self.name,
                batching.priority_levels - 1
            )));
        }
        let default = (batching.default_timeout_ms > 0).then(|| Duration::from_millis(batching.default_timeout_ms));
        Ok((priority, timeout.or(default).map(|t| Instant::now() + t)))
    }

    fn record_outcome<T>(&self, result: &Result<T, EngineError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!("ferroserve_model_requests_total", "model" => self.name.clone(), "outcome" => outcome)
            .increment(1);
    }
}

/// Where a model is in its life.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
    /// Unloaded through the repository API (requests in flight finish on their own reference).
    Unloaded,
}

/// A model as listed to clients.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub name: String,
    pub task: Task,
    /// The backends its lanes run, in lane order (`candle`, `onnx`, or `onnx+candle` for mixed lanes).
    pub backend: String,
    pub ready: bool,
    /// `loading`, `ready` or `failed`.
    pub state: &'static str,
    /// Why loading failed.
    pub error: Option<String>,
    pub dimensions: Option<usize>,
    pub max_input_tokens: Option<usize>,
    /// Weight format as configured (`f32`, `f16`, `q8_0`, ...).
    pub dtype: String,
    /// Bytes of the weight file, once loaded.
    pub bytes: Option<u64>,
    pub lanes: Vec<LaneSummary>,
}

/// One lane of a model as listed to operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaneSummary {
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub backend: &'static str,
    /// Compute threads of its own pool; 0 on the shared ONNX Runtime pool or a GPU.
    pub threads: usize,
    pub max_batch_size: Option<usize>,
}

pub struct Engine {
    models: RwLock<BTreeMap<String, (ModelEntry, ModelState)>>,
    caches: Caches,
    collections: Collections,
    chains: crate::chains::Chains,
    /// Named-tensor inference statistics per model.
    statistics: tensors::Statistics,
    /// The model repository folder, read again when a model is loaded through the API.
    repository: Option<std::path::PathBuf>,
    /// Services chain steps call elsewhere.
    remote: crate::remote::Remote,
    /// Request and token buckets of the API keys (shared through the cache's Redis when it has one).
    rate_limiter: crate::ratelimit::RateLimiter,
    limits: EngineLimits,
    budget: ThreadBudget,
    /// True once every model has loaded; watched by the gRPC health reporter.
    ready: tokio::sync::watch::Sender<bool>,
    /// Start-up (models, seeded collections, chains) has finished.
    started: std::sync::atomic::AtomicBool,
    /// Aliases routed to model variants (A/B) and their shadows.
    routes: crate::routing::Routes,
    /// Itself, for the work it spawns (shadow requests).
    me: std::sync::Weak<Engine>,
}

impl Engine {
    /// An engine that will serve `models`; call [`Engine::start`] to load them. Fails on a bad
    /// `cache.redis_url` (Redis itself is reached lazily).
    pub fn new(
        models: Vec<ModelEntry>,
        limits: EngineLimits,
        budget: ThreadBudget,
        cache: &CacheConfig,
        vectors: VectorsConfig,
        chains_folder: Option<std::path::PathBuf>,
        repository: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Arc<Self>> {
        let collections = Collections::open(vectors)?;
        let semantic = models.iter().filter_map(|m| Some((m.name(), m.semantic_cache.as_ref()?)));
        let caches = Caches::new(cache, semantic)?;
        let rate_limiter = crate::ratelimit::RateLimiter::new(caches.redis());
        let models = models.into_iter().map(|m| (m.name().to_string(), (m, ModelState::Loading))).collect();
        Ok(Arc::new_cyclic(|me| Engine {
            models: RwLock::new(models),
            caches,
            collections,
            chains: crate::chains::Chains::new(chains_folder),
            statistics: Default::default(),
            repository,
            remote: crate::remote::Remote::default(),
            rate_limiter,
            limits,
            budget,
            ready: tokio::sync::watch::Sender::new(false),
            started: std::sync::atomic::AtomicBool::new(false),
            routes: crate::routing::Routes::default(),
            me: me.clone(),
        }))
    }

    /// Bytes and entries of every cache.
    /// The rate limits of API keys.
    pub fn rate_limiter(&self) -> &crate::ratelimit::RateLimiter {
        &self.rate_limiter
    }

    pub fn cache_usage(&self) -> CacheUsage {
        self.caches.usage()
    }

    /// Drops cached entries (see [`Caches::invalidate`]).
    pub async fn invalidate(
        &self,
        model: Option<&str>,
        input: Option<(&str, bool)>,
    ) -> Result<Invalidated, EngineError> {
        self.caches.invalidate(model, input).await.map_err(EngineError::InvalidInput)
    }

    /// Loads every model, one after another, on blocking threads. A model that fails to load is marked
    /// failed (and logged); the others still serve.
    pub async fn load_all(self: &Arc<Self>) {
        let entries: Vec<ModelEntry> = self.read().values().map(|(c, _)| c.clone()).collect();
        for entry in entries {
            let name = entry.name().to_string();
            let started = Instant::now();
            let budget = self.budget.clone();
            let loaded = tokio::task::spawn_blocking(move || load_model(entry, &budget)).await;
            let state = match loaded {
                Ok(Ok(model)) => {
                    tracing::info!(model = %name, secs = started.elapsed().as_secs_f32(), "model ready");
                    ModelState::Ready(Arc::new(model))
                }
                Ok(Err(e)) => {
                    tracing::error!(model = %name, error = %e, "model failed to load");
                    ModelState::Failed(without_paths(&e.to_string()))
                }
                Err(e) => ModelState::Failed(format!("loader panicked: {e}")),
            };
            if let Some(entry) = self.write().get_mut(&name) {
                entry.1 = state;
            }
        }
    }

    /// Start-up, once listening: loads the models, fills the seeded collections, loads the chains, then
    /// reports ready; afterwards re-reads the chains folder every `reload` and reloads models whose files
    /// changed every `poll` (zero: never).
    pub async fn start(self: &Arc<Self>, reload: Duration, poll: Duration) {
        self.load_all().await;
        if !poll.is_zero() {
            let engine = self.clone();
            tokio::spawn(async move { engine.poll_repository(poll).await });
        }
        self.seed_collections().await;
        self.reload_chains();
        self.started.store(true, std::sync::atomic::Ordering::SeqCst);
        self.ready.send_replace(self.is_ready());
        if reload.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(reload);
        loop {
            tick.tick().await;
            self.reload_chains();
        }
    }

    /// A receiver that turns true once every model has loaded.
    pub fn watch_ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// True once start-up has finished and every model loaded successfully.
    pub fn is_ready(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
            && self.read().values().all(|(_, s)| matches!(s, ModelState::Ready(_) | ModelState::Unloaded))
    }

    /// True when `name` is a model of this server (loaded or not). Used to keep metric labels bounded.
    pub fn has_model(&self, name: &str) -> bool {
        self.model_key(name).is_some()
    }

    /// Every configured model, in name order.
    pub fn list_models(&self) -> Vec<ModelSummary> {
        self.read()
            .values()
            .map(|(config, state)| {
                let ready = match state {
                    ModelState::Ready(m) => Some(m),
                    _ => None,
                };
                ModelSummary {
                    name: config.name().to_string(),
                    task: config.model.task,
                    backend: config.backends(),
                    ready: ready.is_some(),
                    state: match state {
                        ModelState::Loading => "loading",
                        ModelState::Ready(_) => "ready",
                        ModelState::Failed(_) => "failed",
                        ModelState::Unloaded => "unloaded",
                    },
                    error: match state {
                        ModelState::Failed(e) => Some(e.clone()),
                        _ => None,
                    },
                    dimensions: ready.and_then(|m| m.embedding().ok()).map(|(info, _)| info.dimensions),
                    max_input_tokens: ready.and_then(|m| match &m.runtime {
                        Runtime::Embedding { info, .. } => Some(info.tokenizer.limit()),
                        Runtime::Generation(g) => Some(g.info.context_length),
                        Runtime::Tensor(_) => None,
                    }),
                    dtype: format!("{:?}", config.model.dtype).to_lowercase(),
                    bytes: ready.map(|m| m.bytes),
                    lanes: config
                        .lanes
                        .iter()
                        .map(|lane| LaneSummary {
                            device: lane.device.to_string(),
                            backend: lane.backend.unwrap_or(config.model.backend).as_str(),
                            threads: self.budget.lane_threads(config, lane),
                            max_batch_size: lane.max_batch_size,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The name of the first embedding model, for APIs whose requests may omit the model (TEI).
    pub fn default_embedding_model(&self) -> Option<String> {
        self.read().values().find(|(c, _)| c.model.task == Task::Embedding).map(|(c, _)| c.name().to_string())
    }

    /// The entry a name addresses: the model of that name, or, for a model with versions, its newest ready
    /// version (its newest version when none is ready).
    fn model_key(&self, name: &str) -> Option<String> {
        key_in(&self.read(), name).map(str::to_string)
    }

    /// Whether the model a name addresses is ready; `None` when there is none.
    pub fn model_ready(&self, name: &str) -> Option<bool> {
        let key = self.model_key(name)?;
        self.read().get(&key).map(|(_, state)| matches!(state, ModelState::Ready(_)))
    }

    /// The versions served under `name` (`1` for a model without version folders).
    pub fn versions_of(&self, name: &str) -> Vec<String> {
        let models = self.read();
        if models.contains_key(name) && models.get(name).is_some_and(|(e, _)| e.version.is_none()) {
            return vec!["1".to_string()];
        }
        let prefix = format!("{name}@");
        let mut versions: Vec<u64> =
            models.iter().filter(|(k, _)| k.starts_with(&prefix)).filter_map(|(_, (e, _))| e.version).collect();
        versions.sort_unstable();
        versions.into_iter().map(|v| v.to_string()).collect()
    }

    /// The entry of `version` of `name`: `name@version`, or `name` itself as version 1.
    pub fn versioned(&self, name: &str, version: &str) -> Result<String, EngineError> {
        if version.is_empty() {
            return Ok(name.to_string());
        }
        let key = format!("{name}@{version}");
        let models = self.read();
        if models.contains_key(&key) {
            return Ok(key);
        }
        if version == "1" && models.get(name).is_some_and(|(e, _)| e.version.is_none()) {
            return Ok(name.to_string());
        }
        Err(EngineError::ModelNotFound(format!("{name} version {version}")))
    }

    fn ready_model(&self, name: &str) -> Result<Arc<ServedModel>, EngineError> {
        let models = self.read();
        let name = key_in(&models, name).unwrap_or(name);
        match models.get(name) {
            None => Err(EngineError::ModelNotFound(name.to_string())),
            Some((_, ModelState::Loading)) => Err(EngineError::ModelLoading { model: name.to_string() }),
            Some((_, ModelState::Failed(reason))) => {
                Err(EngineError::ModelFailed { model: name.to_string(), reason: reason.clone() })
            }
            Some((_, ModelState::Ready(m))) => {
                m.last_used.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                Ok(m.clone())
            }
            Some((_, ModelState::Unloaded)) => Err(EngineError::ModelUnloaded(name.to_string())),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (ModelEntry, ModelState)>> {
        self.models.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, (ModelEntry, ModelState)>> {
        self.models.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The key of `models` a name addresses: the name itself, or, for a model with versions, its newest ready
/// version (its newest version when none is ready). Borrowed from the map: no allocation on the usual path.
fn key_in<'a>(models: &'a BTreeMap<String, (ModelEntry, ModelState)>, name: &'a str) -> Option<&'a str> {
    if models.contains_key(name) {
        return Some(name);
    }
    let prefix = format!("{name}@");
    let versions: Vec<(u64, bool, &'a str)> = models
        .iter()
        .filter_map(|(key, (entry, state))| {
            key.starts_with(&prefix).then_some((entry.version?, matches!(state, ModelState::Ready(_)), key.as_str()))
        })
        .collect();
    let ready = versions.iter().filter(|(_, ready, _)| *ready).max_by_key(|(v, _, _)| *v);
    ready.or_else(|| versions.iter().max_by_key(|(v, _, _)| *v)).map(|(_, _, key)| *key)
}

fn load_model(entry: ModelEntry, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    match entry.model.task {
        Task::Embedding => load_embedding_model(entry, budget),
        Task::Generation => load_generation_model(entry, budget),
        Task::Tensor => load_tensor_model(entry, budget),
    }
}

fn load_tensor_model(entry: ModelEntry, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    let threads = entry.lanes.first().map(|l| budget.lane_threads(&entry, l)).unwrap_or(0);
    let share = CpuShare::new(entry.lanes.first().and_then(|l| budget.lane_cpu(l)));
    let model = ferroserve_models::onnx::OnnxModel::load(&entry.model.weights_path(), threads, share.nice())?;
    let name = entry.name().to_string();
    let batcher = crate::batching::TensorBatcher::start(&name, model, &entry.batching, share)?;
    tracing::info!(model = %name, threads, batches = batcher.batches, "tensor model loaded");
    Ok(ServedModel::new(name, entry, Runtime::Tensor(Arc::new(batcher))))
}

fn load_generation_model(entry: ModelEntry, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    let device = entry.lanes.first().map_or(DeviceSpec::Cpu, |l| l.device.clone());
    let lm = load_language_model(&entry.model, entry.generation.max_context_tokens, &device)?;
    let threads = entry.lanes.first().map(|l| budget.lane_threads(&entry, l)).unwrap_or(1);
    let share = CpuShare::new(entry.lanes.first().and_then(|l| budget.lane_cpu(l)));
    let name = entry.name().to_string();
    let nice = share.nice();
    tracing::info!(model = %name, threads, nice, context = lm.info.context_length, "language model loaded");
    let generator = Generator::start(&name, lm.model, Arc::new(lm.info), entry.generation.clone(), threads, share)
        .map_err(|e| ModelError::Backend(e.to_string()))?;
    Ok(ServedModel::new(name, entry, Runtime::Generation(generator)))
}

/// Texts every lane of a model embeds at load when its lanes run different files.
const PROBE_TEXTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "ferroserve serves embedding and language models over REST and gRPC",
    "library for reading and writing TOML configuration files (development headers)",
];

/// Checks that every lane's vectors of the probe texts are within its `min_cosine` (default 0.999) of the
/// first lane's: lanes of different backends must serve the same model, or the model does not load.
fn lanes_agree(
    model: &str,
    info: &EmbedderInfo,
    configs: &[LaneConfig],
    lanes: &mut [LaneSpec],
) -> Result<(), ModelError> {
    let texts: Vec<String> = PROBE_TEXTS.iter().map(|t| t.to_string()).collect();
    let ids = info.tokenizer.encode(&texts, true)?.unwrap_or_default();
    let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let Some((first, others)) = lanes.split_first_mut() else { return Ok(()) };
    let reference = first.embedder.embed(&seqs)?;
    for ((lane, config), i) in others.iter_mut().zip(&configs[1..]).zip(1..) {
        let vectors = lane.embedder.embed(&seqs)?;
        let least = reference.iter().zip(&vectors).map(|(a, b)| cosine_f64(a, b)).fold(f64::INFINITY, f64::min);
        let bound = config.min_cosine.unwrap_or(0.999);
        if least < bound {
            return Err(ModelError::Unsupported(format!(
                "model {model:?}: lane {i} ({}) disagrees with lane 0 ({}): cosine {least:.6} on the probe texts, \
                 below its min_cosine {bound}; are its files the same model?",
                lane.name, first.name
            )));
        }
        tracing::info!(model, lane = %lane.name, cosine = least, "lane agrees with lane 0");
    }
    Ok(())
}

fn load_embedding_model(entry: ModelEntry, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    let config = &entry.model;
    let info = EmbedderInfo::load(config)?;
    let mut lanes = Vec::with_capacity(entry.lanes.len());
    for (i, lane) in entry.lanes.iter().enumerate() {
        let (threads, cpu) = (budget.lane_threads(&entry, lane), budget.lane_cpu(lane));
        let lane_config = lane.model_config(config);
        let nice = cpu.map_or(0, |c| c.nice);
        let embedder = load_embedder(&lane_config, &info, &lane.device, threads, nice)?;
        let limits = BatchLimits {
            max_batch_size: lane.max_batch_size.unwrap_or(entry.batching.max_batch_size),
            max_batch_tokens: lane.max_batch_tokens.unwrap_or(entry.batching.max_batch_tokens),
        };
        let name = format!("{}-{i}", lane.device);
        let backend = lane_config.backend.as_str();
        tracing::info!(model = %config.name, lane = %name, backend, threads, nice, ?limits, "lane loaded");
        lanes.push(LaneSpec { name, limits, embedder, cpu });
    }
    if entry.lanes.iter().any(LaneConfig::overrides_model) {
        lanes_agree(&config.name, &info, &entry.lanes, &mut lanes)?;
    }
    let queue = BatchQueue::start(&config.name, &entry.batching, lanes);
    let name = config.name.clone();
    Ok(ServedModel::new(name, entry, Runtime::Embedding { info: Box::new(info), queue }))
}
