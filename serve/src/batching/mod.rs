//! A model's bounded request queue and the lane threads that pull batches from it.
//!
//! Every lane of a model (a dedicated OS thread owning one copy of, or share in, the model on one device)
//! pulls from the same queue: whichever lane is free takes everything waiting, up to `max_batch_size`
//! sequences, and runs it as one forward pass. Inference never runs on tokio's worker threads. The queue
//! is bounded: when it is full, a request is refused at once instead of waiting without limit. Work whose
//! caller went away is dropped before compute.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferroserve_models::Embedder;
use ferroserve_models::config::BatchingConfig;
use tokio::sync::{mpsc, oneshot};

use crate::engine::EngineError;

/// A lane to start: its name (for logs and metrics) and the model copy it owns.
pub struct LaneSpec {
    pub name: String,
    pub embedder: Box<dyn Embedder>,
}

type Vectors = Vec<Vec<f32>>;

/// A part of one request: at most `max_batch_size` sequences.
struct Job {
    seqs: Vec<Vec<u32>>,
    reply: oneshot::Sender<Result<Vectors, EngineError>>,
    enqueued: Instant,
}

/// The sending side of a model's queue. Dropping it stops the lanes once the queue is drained.
pub struct BatchQueue {
    model: String,
    tx: mpsc::Sender<Job>,
    max_batch_size: usize,
}

/// How long an overloaded client is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl BatchQueue {
    /// Creates the queue and starts one thread per lane.
    pub fn start(model: &str, config: &BatchingConfig, lanes: Vec<LaneSpec>) -> Self {
        let (tx, rx) = mpsc::channel(config.max_queue_size);
        let rx = Arc::new(Mutex::new(rx));
        for lane in lanes {
            let worker = LaneWorker {
                model: model.to_string(),
                lane: lane.name,
                embedder: lane.embedder,
                rx: rx.clone(),
                max_batch_size: config.max_batch_size,
            };
            let spawned =
                std::thread::Builder::new().name(format!("lane-{model}-{}", worker.lane)).spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(model, error = %e, "could not start a lane thread");
            }
        }
        BatchQueue { model: model.to_string(), tx, max_batch_size: config.max_batch_size }
    }

    /// Queues `seqs` as jobs of at most `max_batch_size` sequences each, all or none, and returns one
    /// future per job, in order. Fails at once when the queue has no room.
    pub fn submit_chunked(
        &self,
        mut seqs: Vec<Vec<u32>>,
    ) -> Result<Vec<impl Future<Output = Result<Vectors, EngineError>> + use<>>, EngineError> {
        let jobs = seqs.len().div_ceil(self.max_batch_size);
        if jobs > self.tx.max_capacity() {
            return Err(EngineError::InvalidInput(format!(
                "{} inputs need {jobs} batches of {}, more than model {:?} can queue ({}); send fewer inputs",
                seqs.len(),
                self.max_batch_size,
                self.model,
                self.tx.max_capacity()
            )));
        }
        let permits = self.tx.try_reserve_many(jobs).map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => {
                metrics::counter!("ferroserve_rejected_total", "model" => self.model.clone(), "reason" => "queue_full")
                    .increment(1);
                EngineError::Overloaded { model: self.model.clone(), retry_after: RETRY_AFTER }
            }
            mpsc::error::TrySendError::Closed(()) => EngineError::ShuttingDown,
        })?;
        let mut replies = Vec::with_capacity(jobs);
        let now = Instant::now();
        for permit in permits {
            let rest = seqs.split_off(self.max_batch_size.min(seqs.len()));
            let (reply, rx) = oneshot::channel();
            permit.send(Job { seqs: std::mem::replace(&mut seqs, rest), reply, enqueued: now });
            replies.push(async move {
                rx.await.map_err(|_| EngineError::Internal("the lane stopped before answering".into()))?
            });
        }
        self.record_depth();
        Ok(replies)
    }

    fn record_depth(&self) {
        let depth = self.tx.max_capacity() - self.tx.capacity();
        metrics::gauge!("ferroserve_queue_depth", "model" => self.model.clone()).set(depth as f64);
    }
}

struct LaneWorker {
    model: String,
    lane: String,
    embedder: Box<dyn Embedder>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch_size: usize,
}

impl LaneWorker {
    fn run(mut self) {
        tracing::info!(model = %self.model, lane = %self.lane, "lane started");
        let mut carry = None;
        while let Some(jobs) = self.next_batch(&mut carry) {
            self.run_batch(jobs);
        }
        tracing::info!(model = %self.model, lane = %self.lane, "lane stopped");
    }

    /// Blocks for the first job, then takes whatever else is waiting up to `max_batch_size` sequences.
    /// A job that would overflow the batch is carried into this lane's next batch. `None`: queue closed.
    fn next_batch(&self, carry: &mut Option<Job>) -> Option<Vec<Job>> {
        let mut jobs: Vec<Job> = carry.take().into_iter().collect();
        let mut size: usize = jobs.iter().map(|j| j.seqs.len()).sum();
        let mut rx = self.rx.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if jobs.is_empty() {
            let job = rx.blocking_recv()?;
            size += job.seqs.len();
            jobs.push(job);
        }
        while size < self.max_batch_size {
            let Ok(job) = rx.try_recv() else { break };
            if size + job.seqs.len() > self.max_batch_size {
                *carry = Some(job);
                break;
            }
            size += job.seqs.len();
            jobs.push(job);
        }
        let depth = rx.len();
        drop(rx);
        metrics::gauge!("ferroserve_queue_depth", "model" => self.model.clone()).set(depth as f64);
        Some(jobs)
    }

    fn run_batch(&mut self, mut jobs: Vec<Job>) {
        let before = jobs.len();
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.len() < before {
            metrics::counter!("ferroserve_dropped_total", "model" => self.model.clone(), "reason" => "cancelled")
                .increment((before - jobs.len()) as u64);
        }
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        for job in &jobs {
            metrics::histogram!("ferroserve_queue_time_seconds", "model" => self.model.clone())
                .record(started.duration_since(job.enqueued).as_secs_f64());
        }
        let seqs: Vec<&[u32]> = jobs.iter().flat_map(|j| j.seqs.iter().map(Vec::as_slice)).collect();
        let batch_len = seqs.len();
        let result = catch_unwind(AssertUnwindSafe(|| self.embedder.embed(&seqs)));
        let labels = [("model", self.model.clone()), ("lane", self.lane.clone())];
        metrics::histogram!("ferroserve_batch_size", &labels).record(batch_len as f64);
        metrics::histogram!("ferroserve_compute_time_seconds", &labels).record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(vectors)) if vectors.len() == batch_len => {
                let mut vectors = vectors.into_iter();
                for job in jobs {
                    let mine: Vectors = vectors.by_ref().take(job.seqs.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Ok(Ok(vectors)) => {
                self.fail(jobs, format!("model returned {} vectors for {batch_len} inputs", vectors.len()))
            }
            Ok(Err(e)) => self.fail(jobs, e.to_string()),
            Err(_) => self.fail(jobs, "the model panicked on this batch".into()),
        }
    }

    fn fail(&self, jobs: Vec<Job>, message: String) {
        tracing::error!(model = %self.model, lane = %self.lane, error = %message, "batch failed");
        for job in jobs {
            let _ = job.reply.send(Err(EngineError::Internal(message.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_models::ModelError;

    /// Returns each sequence's first id as a one-dimensional vector, and remembers batch sizes.
    struct Echo(Arc<Mutex<Vec<usize>>>);

    impl Embedder for Echo {
        fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
            self.0.lock().unwrap().push(batch.len());
            std::thread::sleep(Duration::from_millis(5));
            Ok(batch.iter().map(|s| vec![s[0] as f32]).collect())
        }
    }

    fn queue(max_batch_size: usize, max_queue_size: usize) -> (BatchQueue, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let lanes = vec![LaneSpec { name: "test".into(), embedder: Box::new(Echo(sizes.clone())) }];
        (BatchQueue::start("m", &BatchingConfig { max_batch_size, max_queue_size }, lanes), sizes)
    }

    #[tokio::test]
    async fn splits_a_large_request_and_keeps_order() {
        let (q, sizes) = queue(4, 16);
        let seqs: Vec<Vec<u32>> = (0..10).map(|i| vec![i]).collect();
        let chunks = q.submit_chunked(seqs).unwrap();
        assert_eq!(chunks.len(), 3);
        let out: Vec<f32> =
            futures::future::try_join_all(chunks).await.unwrap().into_iter().flatten().map(|v| v[0]).collect();
        assert_eq!(out, (0..10).map(|i| i as f32).collect::<Vec<_>>());
        assert!(sizes.lock().unwrap().iter().all(|&s| s <= 4));
    }

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let (q, _) = queue(1, 2);
        let mut admitted = Vec::new();
        let mut refused = 0;
        for i in 0..20 {
            match q.submit_chunked(vec![vec![i]]) {
                Ok(f) => admitted.extend(f),
                Err(EngineError::Overloaded { .. }) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused > 0, "some requests must be refused");
        for f in admitted {
            assert_eq!(f.await.unwrap().len(), 1);
        }
        let err = q.submit_chunked((0..3).map(|i| vec![i]).collect()).err().unwrap();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
    }
}
