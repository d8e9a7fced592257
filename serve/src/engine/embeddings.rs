//! Embedding requests: validation, tokenization, submission to the model's lanes, and the per-request
//! post-processing (dimension truncation, normalization) that does not depend on the backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_models::pooling::l2_normalize;

use super::{Engine, EngineError, ServedModel};
use crate::cache::codec;
use crate::cache::embedding::{LeadGuard, Lookup};
use crate::cache::shared::{Kind, SharedCache};
use crate::cache::{CacheMode, CachedVector, EmbeddingCache};

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
    pub truncate: bool,
    /// Keep only the first N dimensions (Matryoshka-style), renormalizing when normalizing.
    pub dimensions: Option<usize>,
    /// 0 is served first; `None`: the model's default.
    pub priority: Option<u8>,
    /// Give up (and never compute) after this long; `None`: the model's default timeout.
    pub timeout: Option<Duration>,
    /// How this request uses the embedding cache.
    pub cache: CacheMode,
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
        self.validate(model, info.dimensions, &req)?;
        let EmbedRequest { inputs, normalize, truncate, dimensions, priority, timeout, cache: mode, .. } = req;
        let batching = &model.config.batching;
        let timeout =
            timeout.or((batching.default_timeout_ms > 0).then(|| Duration::from_millis(batching.default_timeout_ms)));
        let deadline = timeout.map(|t| Instant::now() + t);
        let priority = priority.unwrap_or(batching.default_priority);
        let cache = self.embedding_cache.as_ref().filter(|_| mode != CacheMode::Skip);
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
            if let (Some(cache), Some(shared), true) = (cache, &self.shared, mode.reads())
                && !leads.is_empty()
            {
                let found;
                (leads, found) = from_shared(cache, &shared.cache, &model_name, info.dimensions, leads, &mut raw).await;
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
                let shared = self.shared.as_ref().filter(|_| cache.is_some() && mode.writes());
                let mut to_share = Vec::new();
                for (((i, guard), vector), tokens) in leads.into_iter().zip(embedded.vectors).zip(tokens) {
                    let value = Arc::new(CachedVector { vector, tokens, model: model_name.clone() });
                    if let (Some(cache), Some(guard)) = (cache, guard) {
                        if let Some(shared) = shared {
                            let key = shared.cache.key(Kind::Embedding, &model.name, guard.key());
                            to_share.push((key, codec::encode_vector(&value)));
                        }
                        cache.complete(guard, value.clone(), mode.writes());
                    }
                    raw[i] = Some(value);
                }
                if let Some(shared) = shared {
                    shared.cache.put_many(Kind::Embedding, &model.name, to_share, shared.embedding_ttl);
                }
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
            let labels = [("cache", "embedding".to_string()), ("model", model.name.clone())];
            metrics::counter!("ferroserve_cache_hits_total", &labels).increment(hits as u64);
            metrics::counter!("ferroserve_cache_misses_total", &labels).increment((inputs.len() - hits) as u64);
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

    fn validate(&self, model: &ServedModel, max_dimensions: usize, req: &EmbedRequest) -> Result<(), EngineError> {
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
        Ok(())
    }
}

/// Looks the leads up in the shared cache: found vectors fill the local cache (and wake waiters) and `raw`.
/// Returns the leads still to compute and how many were found. A vector of another size than the model's
/// (a changed model under the same name) is not taken.
async fn from_shared(
    cache: &EmbeddingCache,
    shared: &SharedCache,
    model: &Arc<str>,
    dimensions: usize,
    leads: Vec<(usize, Option<LeadGuard>)>,
    raw: &mut [Option<Arc<CachedVector>>],
) -> (Vec<(usize, Option<LeadGuard>)>, usize) {
    let keys: Vec<String> = leads
        .iter()
        .map(|(_, g)| g.as_ref().map_or_else(String::new, |g| shared.key(Kind::Embedding, model, g.key())))
        .collect();
    let found = shared.get_many(Kind::Embedding, model, &keys).await;
    let mut left = Vec::with_capacity(leads.len());
    let mut hits = 0;
    for ((i, guard), bytes) in leads.into_iter().zip(found) {
        let value =
            bytes.and_then(|b| codec::decode_vector(&b, model.clone())).filter(|v| v.vector.len() == dimensions);
        match (value, guard) {
            (Some(value), Some(guard)) => {
                let value = Arc::new(value);
                cache.complete(guard, value.clone(), true);
                raw[i] = Some(value);
                hits += 1;
            }
            (_, guard) => left.push((i, guard)),
        }
    }
    (left, hits)
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
