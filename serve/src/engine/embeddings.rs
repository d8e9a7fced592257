//! Embedding requests: validation, tokenization, submission to the model's lanes, and the per-request
//! post-processing (dimension truncation, normalization) that does not depend on the backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_models::EmbedderInfo;
use ferroserve_models::pooling::l2_normalize;

use super::{Engine, EngineError, ServedModel};
use crate::cache::{CacheMode, CachedVector, EmbeddingCache, LeadGuard, Lookup, count};

/// Waits for `future` until `deadline` (if any); past it, the request fails with `DeadlineExceeded`.
async fn until<F: std::future::Future>(deadline: Option<Instant>, future: F) -> Result<F::Output, EngineError> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), future).await.map_err(|_| EngineError::DeadlineExceeded),
        None => Ok(future.await),
    }
}

/// One embedding call, as every transport describes it.
#[derive(Debug, Clone)]
pub struct EmbedRequest {
    pub model: String,
    pub inputs: Vec<String>,
    /// `None`: the model's default.
    pub normalize: Option<bool>,
    /// What to do with inputs longer than the model takes.
    pub truncate: Truncate,
    /// Keep only the first N dimensions (Matryoshka-style), renormalizing when normalizing.
    pub dimensions: Option<usize>,
    /// 0 is served first; `None`: the model's default.
    pub priority: Option<u8>,
    /// Give up (and never compute) after this long; `None`: the model's default timeout.
    pub timeout: Option<Duration>,
    /// How this request uses the embedding cache.
    pub cache: CacheMode,
}

impl EmbedRequest {
    /// `inputs` for `model` with the model's defaults (the server's own uses: collections and chains).
    pub fn with_defaults(model: String, inputs: Vec<String>) -> Self {
        EmbedRequest {
            model,
            inputs,
            normalize: None,
            truncate: Truncate::ModelDefault,
            dimensions: None,
            priority: None,
            timeout: None,
            cache: CacheMode::Default,
        }
    }
}

/// What to do with an input longer than the model takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Truncate {
    /// The model's `truncate` setting.
    #[default]
    ModelDefault,
    /// Refuse the request, naming the input.
    Refuse,
    /// Cut it to the model's limit.
    ToLimit,
    /// Cut it to at most this many tokens (vLLM's `truncate_prompt_tokens`); must be at least the model's
    /// limit, as cutting shorter is not supported.
    AtMost(usize),
}

impl From<Option<bool>> for Truncate {
    /// A request's `truncate` flag: absent leaves the model's setting.
    fn from(flag: Option<bool>) -> Self {
        match flag {
            None => Truncate::ModelDefault,
            Some(true) => Truncate::ToLimit,
            Some(false) => Truncate::Refuse,
        }
    }
}

/// Vectors in input order, and the tokens they cost.
#[derive(Debug)]
pub struct EmbedOutput {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
    /// Time waiting for a lane, and in forward passes (see [`crate::batching::Embedded`]).
    pub queue_time: Duration,
    pub compute_time: Duration,
    /// Inputs answered from the cache (or by another request computing the same text).
    pub cache_hits: usize,
}

impl EmbedOutput {
    /// How the request was served, for headers and metadata.
    pub fn meta(&self) -> super::ResponseMeta {
        super::ResponseMeta {
            model: self.model.clone(),
            queue_time: Some(self.queue_time),
            compute_time: Some(self.compute_time),
            cache: if self.cache_hits == self.vectors.len() { "HIT" } else { "MISS" },
            cache_hits: Some(self.cache_hits),
            similarity: None,
        }
    }
}

impl Engine {
    /// Embeds every input of `req` with its model.
    pub async fn embed(&self, req: EmbedRequest) -> Result<EmbedOutput, EngineError> {
        let model = self.ready_model(&req.model)?;
        let result = self.embed_with(&model, req).await;
        model.record_outcome(&result);
        result
    }

    async fn embed_with(&self, model: &Arc<ServedModel>, req: EmbedRequest) -> Result<EmbedOutput, EngineError> {
        let (info, queue) = model.embedding()?;
        let plan = self.validate(model, info, &req)?;
        let Plan { priority, deadline, truncate } = plan;
        let EmbedRequest { inputs, normalize, dimensions, cache: mode, .. } = req;
        let cache = self.caches.embeddings(mode);
        let model_name: Arc<str> = model.name.as_str().into();

        let mut raw: Vec<Option<Arc<CachedVector>>> = vec![None; inputs.len()];
        let mut todo: Vec<usize> = (0..inputs.len()).collect();
        let (mut queue_time, mut compute_time, mut hits) = (Duration::ZERO, Duration::ZERO, 0);
        // Each round: hits are taken, misses this request leads are computed in one submission, misses another
        // request is computing are awaited; a miss whose leader went away comes back for the next round.
        while !todo.is_empty() {
            let mut leads: Vec<(usize, Option<LeadGuard>)> = Vec::new();
            let mut waits = Vec::new();
            for i in todo.drain(..) {
                let Some(cache) = cache else {
                    leads.push((i, None));
                    continue;
                };
                match cache.lookup(EmbeddingCache::key(&model.name, truncate, &inputs[i]), mode.reads()) {
                    Lookup::Hit(v) => {
                        raw[i] = Some(v);
                        hits += 1;
                    }
                    Lookup::Wait(rx) => waits.push((i, rx)),
                    Lookup::Lead(guard) => leads.push((i, Some(guard))),
                }
            }
            if mode.reads() {
                let found;
                (leads, found) = self.caches.shared_vectors(&model_name, info.dimensions, leads, &mut raw).await;
                hits += found;
            }
            if mode == CacheMode::Only && (!leads.is_empty() || !waits.is_empty()) {
                return Err(EngineError::CacheMiss);
            }
            if !leads.is_empty() {
                let texts = leads.iter().map(|(i, _)| inputs[*i].clone()).collect();
                let ids = tokenize(model, texts, truncate).await?;
                let tokens: Vec<usize> = ids.iter().map(Vec::len).collect();
                let pending = queue.submit(ids, priority, deadline)?;
                // At the deadline the caller gets its answer even if no lane is free yet; the queue then drops
                // the abandoned sequences before compute.
                let embedded = until(deadline, pending).await??;
                queue_time = queue_time.max(embedded.queue_time);
                compute_time += embedded.compute_time;
                let mut computed = Vec::new();
                for (((i, guard), vector), tokens) in leads.into_iter().zip(embedded.vectors).zip(tokens) {
                    let value = Arc::new(CachedVector { vector, tokens, model: model_name.clone() });
                    computed.extend(guard.map(|g| (g, value.clone())));
                    raw[i] = Some(value);
                }
                self.caches.fill_vectors(&model.name, computed, mode.writes());
            }
            for (i, mut rx) in waits {
                match until(deadline, rx.wait_for(Option::is_some)).await? {
                    Ok(value) => {
                        raw[i] = value.clone();
                        hits += 1;
                    }
                    Err(_) => todo.push(i), // the leader went away without a result
                }
            }
        }
        if cache.is_some() {
            count("ferroserve_cache_hits_total", "embedding", &model.name, hits as u64);
            count("ferroserve_cache_misses_total", "embedding", &model.name, (inputs.len() - hits) as u64);
        }

        let normalize = normalize.unwrap_or(info.normalize);
        let mut prompt_tokens = 0;
        let vectors = raw
            .into_iter()
            .map(|v| {
                let v = v.ok_or_else(|| EngineError::Internal("an input was left without a vector".into()))?;
                prompt_tokens += v.tokens;
                let mut vector = match dimensions {
                    Some(d) => v.vector[..d.min(v.vector.len())].to_vec(),
                    None => v.vector.clone(),
                };
                if normalize {
                    l2_normalize(&mut vector);
                }
                Ok(vector)
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        metrics::counter!("ferroserve_input_tokens_total", "model" => model.name.clone())
            .increment(prompt_tokens as u64);
        Ok(EmbedOutput {
            model: model.name.clone(),
            vectors,
            prompt_tokens,
            queue_time,
            compute_time,
            cache_hits: hits,
        })
    }

    /// Checks everything about `req` that can be wrong before any cache or queue sees it, and resolves the
    /// model's defaults.
    fn validate(&self, model: &ServedModel, info: &EmbedderInfo, req: &EmbedRequest) -> Result<Plan, EngineError> {
        let (max_dimensions, limit) = (info.dimensions, info.tokenizer.limit());
        let invalid = |m: String| Err(EngineError::InvalidInput(m));
        if req.inputs.is_empty() {
            return invalid("input is empty: send at least one text".into());
        }
        if req.inputs.len() > self.limits.max_client_batch_size {
            return invalid(format!(
                "{} inputs in one request; the limit is {} (max_client_batch_size)",
                req.inputs.len(),
                self.limits.max_client_batch_size
            ));
        }
        if let Some(i) = req.inputs.iter().position(|t| t.is_empty()) {
            return invalid(format!("input {i} is an empty string"));
        }
        if let Some(d) = req.dimensions {
            let max = max_dimensions;
            if d == 0 || d > max {
                return invalid(format!("dimensions must be between 1 and {max} for model {:?}, got {d}", model.name));
            }
        }
        let (priority, deadline) = model.schedule(req.priority, req.timeout)?;
        let truncate = match req.truncate {
            Truncate::ModelDefault => model.entry.model.truncate,
            Truncate::Refuse => false,
            Truncate::ToLimit => true,
            Truncate::AtMost(n) if n >= limit => true,
            Truncate::AtMost(n) => {
                return invalid(format!(
                    "truncate_prompt_tokens {n} is below model {:?}'s limit of {limit} tokens; cutting shorter is \
                     not supported: send -1 to cut at the limit",
                    model.name
                ));
            }
        };
        Ok(Plan { priority, deadline, truncate })
    }
}

/// A validated request's resolved scheduling and truncation.
struct Plan {
    priority: u8,
    deadline: Option<Instant>,
    truncate: bool,
}

/// Requests with more text than this are tokenized on a blocking thread, so they never stall the async
/// workers; smaller ones are tokenized in place, which is cheaper than the hop.
const INLINE_TOKENIZE_BYTES: usize = 16 * 1024;

async fn tokenize(model: &Arc<ServedModel>, inputs: Vec<String>, truncate: bool) -> Result<Vec<Vec<u32>>, EngineError> {
    let run = move |model: &ServedModel, inputs: &[String]| {
        let (info, _) = model.embedding()?;
        Ok(info.tokenizer.encode(inputs, truncate).map_err(|e| EngineError::Internal(e.to_string()))??)
    };
    if inputs.iter().map(String::len).sum::<usize>() <= INLINE_TOKENIZE_BYTES {
        return run(model, &inputs);
    }
    let model = model.clone();
    tokio::task::spawn_blocking(move || run(&model, &inputs))
        .await
        .map_err(|e| EngineError::Internal(format!("tokenizer task failed: {e}")))?
}
