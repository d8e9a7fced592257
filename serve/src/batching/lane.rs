//! Lane threads: each owns one model copy on one device, takes batches sized for itself from the model's
//! queue, runs them, and hands each sequence's vector back to its request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use ferroserve_models::Embedder;
use ferroserve_models::cpu_share::CpuShare;

use super::BatchError;
use super::Shared;
use super::pending::Pending;
use super::queue::{BatchLimits, Item};

pub(super) struct LaneWorker {
    /// Position among the model's lanes.
    pub index: usize,
    pub name: String,
    pub embedder: Box<dyn Embedder>,
    pub limits: BatchLimits,
    /// This lane's place among the CPU lanes sharing the cores (inert on a GPU).
    pub share: CpuShare,
    pub shared: Arc<Shared>,
}

impl LaneWorker {
    pub fn run(mut self) {
        self.share.lower_this_thread();
        tracing::info!(model = %self.shared.model, lane = %self.name, limits = ?self.limits, "lane started");
        while let Some(batch) = self.shared.take_batch(self.index, self.limits) {
            self.run_batch(batch);
            // After the answers are out: a lighter lane gives a busy heavier one its share.
            self.share.rest();
        }
        tracing::info!(model = %self.shared.model, lane = %self.name, "lane stopped");
    }

    fn run_batch(&mut self, batch: Vec<Item>) {
        let started = Instant::now();
        let seqs: Vec<&[u32]> = batch.iter().map(|i| i.ids.as_slice()).collect();
        let padded_tokens = seqs.iter().map(|s| s.len()).max().unwrap_or(0) * seqs.len();
        let span = tracing::info_span!("batch", model = %self.shared.model, lane = %self.name, size = batch.len() as i64,
                                       tokens = padded_tokens as i64);
        let mut linked: Vec<*const Pending> = Vec::with_capacity(batch.len());
        for item in &batch {
            item.request.dequeued();
            if !linked.contains(&Arc::as_ptr(&item.request)) {
                linked.push(Arc::as_ptr(&item.request));
                span.follows_from(&item.request.span);
            }
        }
        let _batch = span.enter();
        let result = {
            let _forward = tracing::info_span!("forward", sequences = seqs.len() as i64).entered();
            let embedder = &mut self.embedder;
            self.share.compute(|| catch_unwind(AssertUnwindSafe(|| embedder.embed(&seqs))))
        };
        let ended = Instant::now();
        let elapsed = ended - started;

        let labels = [("model", self.shared.model.clone()), ("lane", self.name.clone())];
        metrics::histogram!("ferroserve_batch_size", &labels).record(batch.len() as f64);
        metrics::histogram!("ferroserve_batch_tokens", &labels).record(padded_tokens as f64);
        metrics::histogram!("ferroserve_compute_time_seconds", &labels).record(elapsed.as_secs_f64());
        metrics::counter!("ferroserve_lane_busy_microseconds_total", &labels).increment(elapsed.as_micros() as u64);
        metrics::counter!("ferroserve_lane_sequences_total", &labels).increment(batch.len() as u64);
        self.shared.record_batch(self.index, batch.len(), elapsed);

        let failure = match result {
            Ok(Ok(vectors)) if vectors.len() == batch.len() => {
                for (item, vector) in batch.iter().zip(vectors) {
                    item.request.complete(item.slot, vector, started, ended);
                }
                return;
            }
            Ok(Ok(vectors)) => format!("model returned {} vectors for {} inputs", vectors.len(), batch.len()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the model panicked on this batch".to_string(),
        };
        tracing::error!(model = %self.shared.model, lane = %self.name, error = %failure, "batch failed");
        for item in &batch {
            item.request.fail(BatchError::LaneFailed(failure.clone()));
        }
    }
}
