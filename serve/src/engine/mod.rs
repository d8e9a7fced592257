//! The engine: the one place that owns served models and answers requests. Transports (HTTP, gRPC) are thin
//! adapters over it. Models load in the background so the process is live (and `/health` answers) at once
//! and becomes ready when every model has loaded.

mod embeddings;
mod error;
mod generate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ferroserve_models::llm::load_language_model;
use ferroserve_models::{EmbedderInfo, ModelConfig, ModelError, Task, load_embedder};

use crate::batching::{BatchLimits, BatchQueue, LaneSpec};
use crate::cache::semantic::SemanticCache;
use crate::cache::shared::{Kind as SharedKind, SharedCache};
use crate::cache::{CacheConfig, EmbeddingCache, ResponseCache};
use crate::generation::Generator;
use crate::threads::ThreadBudget;

pub use embeddings::{EmbedOutput, EmbedRequest};
pub use error::EngineError;
pub use generate::{GenerateRequest, GenerationStream, Prompt};

/// Request limits that apply to every model.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    pub max_client_batch_size: usize,
}

/// What an invalidation dropped.
pub struct Invalidated {
    pub what: String,
    /// Keys deleted from the shared cache, or why that failed; `None` without one.
    pub shared: Option<Result<u64, String>>,
}

/// A loaded model and what runs it.
pub struct ServedModel {
    pub name: String,
    pub config: ModelConfig,
    runtime: Runtime,
}

enum Runtime {
    /// Lanes pulling batches from one queue.
    Embedding { info: Box<EmbedderInfo>, queue: BatchQueue },
    /// A continuous-batching scheduler.
    Generation(Generator),
}

impl ServedModel {
    fn embedding(&self) -> Result<(&EmbedderInfo, &BatchQueue), EngineError> {
        match &self.runtime {
            Runtime::Embedding { info, queue } => Ok((info, queue)),
            Runtime::Generation(_) => Err(EngineError::InvalidInput(format!(
                "model {:?} generates text and has no embeddings; use /v1/completions or /v1/chat/completions",
                self.name
            ))),
        }
    }

    fn generator(&self) -> Result<&Generator, EngineError> {
        match &self.runtime {
            Runtime::Generation(g) => Ok(g),
            Runtime::Embedding { .. } => Err(EngineError::InvalidInput(format!(
                "model {:?} is an embedding model and cannot generate text; use /v1/embeddings",
                self.name
            ))),
        }
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
}

/// A model as listed to clients.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub name: String,
    pub task: Task,
    pub backend: String,
    pub ready: bool,
    /// `loading`, `ready` or `failed`.
    pub state: &'static str,
    /// Why loading failed.
    pub error: Option<String>,
    pub dimensions: Option<usize>,
    pub max_input_tokens: Option<usize>,
}

/// The Redis cache and the TTLs of what goes into it.
struct Shared {
    cache: Arc<SharedCache>,
    embedding_ttl: Duration,
    response_ttl: Duration,
}

pub struct Engine {
    models: RwLock<BTreeMap<String, (ModelConfig, ModelState)>>,
    /// `None` when `cache.embedding_mb` is 0.
    embedding_cache: Option<EmbeddingCache>,
    /// `None` when `cache.response_mb` is 0.
    response_cache: Option<Arc<ResponseCache>>,
    /// Semantic response caches of the generation models that configure one.
    semantic_caches: HashMap<String, Arc<SemanticCache>>,
    /// The shared second level (Redis) of the embedding and exact response caches.
    shared: Option<Shared>,
    limits: EngineLimits,
    budget: ThreadBudget,
    /// True once every model has loaded; watched by the gRPC health reporter.
    ready: tokio::sync::watch::Sender<bool>,
}

impl Engine {
    /// An engine that will serve `configs`; call [`Engine::load_all`] to load them. Fails on a bad
    /// `cache.redis_url` (Redis itself is reached lazily).
    pub fn new(
        configs: Vec<ModelConfig>,
        limits: EngineLimits,
        budget: ThreadBudget,
        cache: &CacheConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let ttl = Duration::from_secs(cache.response_ttl_secs);
        let semantic_caches = configs
            .iter()
            .filter_map(|c| {
                let s = c.semantic_cache.as_ref()?;
                Some((c.name.clone(), Arc::new(SemanticCache::new(s.threshold, s.max_entries, ttl))))
            })
            .collect();
        let models = configs.into_iter().map(|c| (c.name.clone(), (c, ModelState::Loading))).collect();
        let ready = tokio::sync::watch::Sender::new(false);
        let embedding_cache = (cache.embedding_mb > 0).then(|| {
            EmbeddingCache::new(cache.embedding_mb * 1024 * 1024, Duration::from_secs(cache.embedding_ttl_secs))
        });
        let response_cache = (cache.response_mb > 0).then(|| {
            Arc::new(ResponseCache::new(cache.response_mb * 1024 * 1024, Duration::from_secs(cache.response_ttl_secs)))
        });
        let shared = match &cache.redis_url {
            Some(url) => Some(Shared {
                cache: Arc::new(SharedCache::new(
                    url,
                    &cache.redis_prefix,
                    Duration::from_millis(cache.redis_timeout_ms.max(1)),
                    Duration::from_secs(cache.redis_retry_secs),
                )?),
                embedding_ttl: Duration::from_secs(cache.embedding_ttl_secs),
                response_ttl: Duration::from_secs(cache.response_ttl_secs),
            }),
            None => None,
        };
        Ok(Arc::new(Engine {
            models: RwLock::new(models),
            embedding_cache,
            response_cache,
            semantic_caches,
            shared,
            limits,
            budget,
            ready,
        }))
    }

    /// Bytes and entries of each model's semantic cache (also exported as gauges).
    pub fn semantic_cache_usage(&self) -> BTreeMap<String, (u64, u64)> {
        self.semantic_caches
            .iter()
            .map(|(name, cache)| {
                let usage = cache.usage();
                metrics::gauge!("ferroserve_cache_bytes", "cache" => "semantic", "model" => name.clone())
                    .set(usage.0 as f64);
                metrics::gauge!("ferroserve_cache_entries", "cache" => "semantic", "model" => name.clone())
                    .set(usage.1 as f64);
                (name.clone(), usage)
            })
            .collect()
    }

    /// Bytes and entries in the response cache.
    pub fn response_cache_usage(&self) -> Option<(u64, u64)> {
        let usage = self.response_cache.as_ref().map(|c| c.usage())?;
        metrics::gauge!("ferroserve_cache_bytes", "cache" => "response").set(usage.0 as f64);
        metrics::gauge!("ferroserve_cache_entries", "cache" => "response").set(usage.1 as f64);
        Some(usage)
    }

    /// Drops cached entries: one text's embedding (`input`, needs `model`), everything of one model (its
    /// embeddings, exact and semantic responses), or everything; locally and in the shared cache.
    pub async fn invalidate(
        &self,
        model: Option<&str>,
        input: Option<(&str, bool)>,
    ) -> Result<Invalidated, EngineError> {
        let (what, entry) = match (model, input) {
            (Some(m), Some((text, truncate))) => {
                let key = EmbeddingCache::key(m, truncate, text);
                if let Some(cache) = &self.embedding_cache {
                    cache.invalidate(key);
                }
                (format!("embedding entry of model {m:?}"), Some(key))
            }
            (None, Some(_)) => return Err(EngineError::InvalidInput("an input needs its model".into())),
            (model, None) => {
                if let Some(cache) = &self.embedding_cache {
                    model.map_or_else(|| cache.invalidate_all(), |m| cache.invalidate_model(m));
                }
                if let Some(cache) = &self.response_cache {
                    model.map_or_else(|| cache.invalidate_all(), |m| cache.invalidate_model(m));
                }
                for (name, cache) in &self.semantic_caches {
                    if model.is_none_or(|m| m == name) {
                        cache.invalidate_all();
                    }
                }
                (model.map_or("all entries".into(), |m| format!("entries of model {m:?}")), None)
            }
        };
        let shared = match &self.shared {
            None => None,
            Some(s) => {
                let kind = entry.map(|_| SharedKind::Embedding);
                Some(s.cache.invalidate(kind, model, entry).await)
            }
        };
        Ok(Invalidated { what, shared })
    }

    /// Bytes and entries in the embedding cache (also exported as gauges).
    pub fn embedding_cache_usage(&self) -> Option<(u64, u64)> {
        let usage = self.embedding_cache.as_ref().map(EmbeddingCache::usage)?;
        metrics::gauge!("ferroserve_cache_bytes", "cache" => "embedding").set(usage.0 as f64);
        metrics::gauge!("ferroserve_cache_entries", "cache" => "embedding").set(usage.1 as f64);
        Some(usage)
    }

    /// Loads every model, one after another, on blocking threads. A model that fails to load is marked
    /// failed (and logged); the others still serve.
    pub async fn load_all(self: &Arc<Self>) {
        let configs: Vec<ModelConfig> = self.read().values().map(|(c, _)| c.clone()).collect();
        for config in configs {
            let name = config.name.clone();
            let started = Instant::now();
            let budget = self.budget.clone();
            let loaded = tokio::task::spawn_blocking(move || load_model(config, &budget)).await;
            let state = match loaded {
                Ok(Ok(model)) => {
                    tracing::info!(model = %name, secs = started.elapsed().as_secs_f32(), "model ready");
                    ModelState::Ready(Arc::new(model))
                }
                Ok(Err(e)) => {
                    tracing::error!(model = %name, error = %e, "model failed to load");
                    ModelState::Failed(e.to_string())
                }
                Err(e) => ModelState::Failed(format!("loader panicked: {e}")),
            };
            if let Some(entry) = self.write().get_mut(&name) {
                entry.1 = state;
            }
        }
        self.ready.send_replace(self.is_ready());
    }

    /// A receiver that turns true once every model has loaded.
    pub fn watch_ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// True once every model has finished loading successfully.
    pub fn is_ready(&self) -> bool {
        self.read().values().all(|(_, s)| matches!(s, ModelState::Ready(_)))
    }

    /// True when `name` is a model of this server (loaded or not). Used to keep metric labels bounded.
    pub fn has_model(&self, name: &str) -> bool {
        self.read().contains_key(name)
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
                    name: config.name.clone(),
                    task: config.task,
                    backend: format!("{:?}", config.backend).to_lowercase(),
                    ready: ready.is_some(),
                    state: match state {
                        ModelState::Loading => "loading",
                        ModelState::Ready(_) => "ready",
                        ModelState::Failed(_) => "failed",
                    },
                    error: match state {
                        ModelState::Failed(e) => Some(e.clone()),
                        _ => None,
                    },
                    dimensions: ready.and_then(|m| m.embedding().ok()).map(|(info, _)| info.dimensions),
                    max_input_tokens: ready.map(|m| match &m.runtime {
                        Runtime::Embedding { info, .. } => info.tokenizer.limit(),
                        Runtime::Generation(g) => g.info.context_length,
                    }),
                }
            })
            .collect()
    }

    /// The name of the first embedding model, for APIs whose requests may omit the model (TEI).
    pub fn default_embedding_model(&self) -> Option<String> {
        self.read().values().find(|(c, _)| c.task == Task::Embedding).map(|(c, _)| c.name.clone())
    }

    fn ready_model(&self, name: &str) -> Result<Arc<ServedModel>, EngineError> {
        match self.read().get(name) {
            None => Err(EngineError::ModelNotFound(name.to_string())),
            Some((_, ModelState::Loading)) => Err(EngineError::ModelLoading { model: name.to_string() }),
            Some((_, ModelState::Failed(reason))) => {
                Err(EngineError::ModelFailed { model: name.to_string(), reason: reason.clone() })
            }
            Some((_, ModelState::Ready(m))) => Ok(m.clone()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (ModelConfig, ModelState)>> {
        self.models.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, (ModelConfig, ModelState)>> {
        self.models.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn load_model(config: ModelConfig, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    match config.task {
        Task::Embedding => load_embedding_model(config, budget),
        Task::Generation => load_generation_model(config, budget),
    }
}

fn load_generation_model(config: ModelConfig, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    let lm = load_language_model(&config, config.generation.max_context_tokens)?;
    let threads = config.lanes.first().map(|l| budget.lane_threads(l)).unwrap_or(1);
    tracing::info!(model = %config.name, threads, context = lm.info.context_length, "language model loaded");
    let generator = Generator::start(&config.name, lm.model, Arc::new(lm.info), config.generation.clone(), threads)
        .map_err(|e| ModelError::Backend(e.to_string()))?;
    Ok(ServedModel { name: config.name.clone(), config, runtime: Runtime::Generation(generator) })
}

fn load_embedding_model(config: ModelConfig, budget: &ThreadBudget) -> Result<ServedModel, ModelError> {
    let info = EmbedderInfo::load(&config)?;
    let mut lanes = Vec::with_capacity(config.lanes.len());
    for (i, lane) in config.lanes.iter().enumerate() {
        let threads = budget.lane_threads(lane);
        let embedder = load_embedder(&config, &info, &lane.device, threads)?;
        let limits = BatchLimits {
            max_batch_size: lane.max_batch_size.unwrap_or(config.batching.max_batch_size),
            max_batch_tokens: lane.max_batch_tokens.unwrap_or(config.batching.max_batch_tokens),
        };
        let name = format!("{}-{i}", lane.device);
        tracing::info!(model = %config.name, lane = %name, threads, ?limits, "lane loaded");
        lanes.push(LaneSpec { name, limits, embedder });
    }
    let queue = BatchQueue::start(&config.name, &config.batching, lanes);
    Ok(ServedModel { name: config.name.clone(), config, runtime: Runtime::Embedding { info: Box::new(info), queue } })
}
