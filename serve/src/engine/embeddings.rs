//! Embedding requests: validation, tokenization, submission to the model's lanes, and the per-request
//! post-processing (dimension truncation, normalization) that does not depend on the backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_models::pooling::l2_normalize;

use super::{Engine, EngineError, ServedModel};

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
        let EmbedRequest { inputs, normalize, truncate, dimensions, priority, timeout, .. } = req;
        let batching = &model.config.batching;
        let timeout =
            timeout.or((batching.default_timeout_ms > 0).then(|| Duration::from_millis(batching.default_timeout_ms)));
        let deadline = timeout.map(|t| Instant::now() + t);
        let ids = tokenize(model, inputs, truncate).await?;
        let prompt_tokens = ids.iter().map(Vec::len).sum();

        let pending = queue.submit(ids, priority.unwrap_or(batching.default_priority), deadline)?;
        // At the deadline the caller gets its answer even if no lane is free yet; the queue then drops
        // the abandoned sequences before compute.
        let embedded = match deadline {
            Some(d) => {
                tokio::time::timeout_at(d.into(), pending).await.map_err(|_| EngineError::DeadlineExceeded)??
            }
            None => pending.await?,
        };
        let mut vectors = embedded.vectors;

        let normalize = normalize.unwrap_or(info.normalize);
        for v in &mut vectors {
            if let Some(d) = dimensions {
                v.truncate(d);
            }
            if normalize {
                l2_normalize(v);
            }
        }
        metrics::counter!("ferroserve_input_tokens_total", "model" => model.name.clone())
            .increment(prompt_tokens as u64);
        Ok(EmbedOutput {
            model: model.name.clone(),
            vectors,
            prompt_tokens,
            queue_time: embedded.queue_time,
            compute_time: embedded.compute_time,
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
