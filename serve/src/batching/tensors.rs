//! Dynamic batching for tensor models (Triton's dynamic batcher): requests whose inputs agree in everything
//! but the leading batch dimension are stacked along it, run in one call, and the outputs split back by each
//! request's rows. A model whose inputs do not all have a dynamic leading dimension runs one request at a
//! time. The batch waits at most `max_queue_delay_ms` for company and holds at most `max_batch_size` rows;
//! waiting requests are taken by priority (0 first), then in arrival order; a full queue refuses at once, and
//! a request whose deadline passed while queued is not run.
//!
//! One thread per model owns its session (a session runs one call at a time).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferroserve_models::ModelError;
use ferroserve_models::cpu_share::CpuShare;
use ferroserve_models::onnx::{NamedTensor, OnnxModel, TensorData, TensorSpec, check_inputs};
use tokio::sync::oneshot;

use super::{BatchError, BatchingConfig};

/// What a request gets back: its outputs, and how long it waited for the model.
pub type TensorAnswer = Result<(Vec<NamedTensor>, Duration), BatchError>;

struct Job {
    inputs: Vec<NamedTensor>,
    /// Rows along the batch dimension.
    rows: usize,
    /// 0 is served first.
    priority: u8,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<TensorAnswer>,
    /// The span of the request; its batch's span links to it.
    span: tracing::Span,
    /// Open while it waits.
    queue_span: tracing::Span,
}

/// The queue of one tensor model.
pub struct TensorBatcher {
    model: String,
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Whether requests are stacked (every input has a dynamic leading dimension and batches may hold >1 row).
    pub batches: bool,
}

impl TensorBatcher {
    /// Starts the model's thread, sharing the cores as `share` says (see `cpu_share.rs`).
    pub fn start(name: &str, model: OnnxModel, config: &BatchingConfig, share: CpuShare) -> Result<Self, ModelError> {
        let (inputs, outputs) = (model.inputs().to_vec(), model.outputs().to_vec());
        let batches = config.max_batch_size > 1
            && !inputs.is_empty()
            && inputs.iter().all(|s| s.shape.first().is_some_and(|d| *d < 0));
        let (jobs, rx) = mpsc::channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            model,
            rx,
            waiting: waiting.clone(),
            name: name.to_string(),
            max_rows: if batches { config.max_batch_size } else { 1 },
            preferred: if batches { config.preferred_batch_sizes.clone() } else { Vec::new() },
            delay: Duration::from_millis(config.max_queue_delay_ms),
            queue: Waiting::default(),
            share,
        };
        std::thread::Builder::new()
            .name(format!("tensor-{name}"))
            .spawn(move || worker.run())
            .map_err(|e| ModelError::Backend(format!("starting the model's thread: {e}")))?;
        Ok(TensorBatcher {
            model: name.to_string(),
            jobs,
            waiting,
            max_queue: config.max_queue_size,
            inputs,
            outputs,
            batches,
        })
    }

    /// Queues one request (checked here, so a bad one never spoils a batch) and waits for its answer.
    pub async fn run(&self, inputs: Vec<NamedTensor>, priority: u8, deadline: Option<Instant>) -> TensorAnswer {
        check_inputs(&self.inputs, &inputs).map_err(|e| BatchError::InvalidInput(e.to_string()))?;
        let rows =
            if self.batches { inputs.first().and_then(|t| t.shape.first()).map_or(1, |&d| d as usize) } else { 1 };
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(BatchError::Overloaded { model: self.model.clone(), retry_after: Duration::from_secs(1) });
        }
        let (reply, answer) = oneshot::channel();
        let queue_span = tracing::info_span!("queue", model = %self.model, rows = rows as i64);
        let span = tracing::Span::current();
        let job = Job { inputs, rows, priority, enqueued: Instant::now(), deadline, reply, span, queue_span };
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(BatchError::ShuttingDown);
        }
        answer.await.map_err(|_| BatchError::ShuttingDown)?
    }
}

struct Worker {
    model: OnnxModel,
    rx: mpsc::Receiver<Job>,
    waiting: Arc<AtomicUsize>,
    name: String,
    max_rows: usize,
    /// Preferred batch sizes, in rows.
    preferred: Vec<usize>,
    delay: Duration,
    queue: Waiting,
    /// This model's place among the lanes sharing the cores.
    share: CpuShare,
}

/// Jobs received and not yet run, by priority, then arrival.
#[derive(Default)]
struct Waiting {
    heap: BinaryHeap<Reverse<(u8, u64, Slot)>>,
    arrivals: u64,
}

/// A job in the heap (ordered by the key beside it only).
struct Slot(Job);

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Waiting {
    fn push(&mut self, job: Job) {
        self.arrivals += 1;
        self.heap.push(Reverse((job.priority, self.arrivals, Slot(job))));
    }

    fn pop(&mut self) -> Option<Job> {
        self.heap.pop().map(|Reverse((_, _, Slot(job)))| job)
    }

    /// Rows waiting.
    fn rows(&self) -> usize {
        self.heap.iter().map(|Reverse((_, _, Slot(job)))| job.rows).sum()
    }

    /// `first` and the waiting jobs that stack with it, by priority, up to `max_rows`; the rest stay.
    fn batch(&mut self, first: Job, max_rows: usize) -> Vec<Job> {
        let mut rows = first.rows;
        let mut batch = vec![first];
        let mut left = Vec::new();
        while rows < max_rows {
            let Some(Reverse((p, n, Slot(job)))) = self.heap.pop() else { break };
            if rows + job.rows <= max_rows && stackable(&batch[0].inputs, &job.inputs) {
                rows += job.rows;
                batch.push(job);
            } else {
                left.push(Reverse((p, n, Slot(job))));
            }
        }
        self.heap.extend(left);
        batch
    }
}

impl Worker {
    fn run(mut self) {
        self.share.lower_this_thread();
        loop {
            while let Ok(job) = self.rx.try_recv() {
                self.queue.push(job);
            }
            let first = match self.queue.pop() {
                Some(job) => job,
                None => match self.rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            // Company: what arrives before the first job's delay is up, or until a preferred size is reached.
            if self.max_rows > first.rows {
                let until = first.enqueued + self.delay;
                let full = |rows: usize| rows >= self.max_rows || self.preferred.contains(&rows);
                while !full(first.rows + self.queue.rows())
                    && let Some(wait) = until.checked_duration_since(Instant::now()).filter(|w| !w.is_zero())
                {
                    match self.rx.recv_timeout(wait) {
                        Ok(job) => self.queue.push(job),
                        Err(_) => break,
                    }
                }
                while let Ok(job) = self.rx.try_recv() {
                    self.queue.push(job);
                }
            }
            let limit = preferred_limit(&self.preferred, first.rows + self.queue.rows(), self.max_rows);
            let batch = self.queue.batch(first, limit);
            self.waiting.fetch_sub(batch.len(), Ordering::SeqCst);
            let now = Instant::now();
            let (live, late): (Vec<Job>, Vec<Job>) =
                batch.into_iter().partition(|j| j.deadline.is_none_or(|d| now < d));
            for job in late {
                let _ = job.reply.send(Err(BatchError::DeadlineExceeded));
            }
            if !live.is_empty() {
                self.execute(live);
                self.share.rest();
            }
        }
    }

    fn execute(&mut self, mut batch: Vec<Job>) {
        let started = Instant::now();
        metrics::histogram!("ferroserve_tensor_batch_size", "model" => self.name.clone()).record(batch.len() as f64);
        let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
        let waited: Vec<Duration> = batch.iter().map(|j| started - j.enqueued).collect();
        let span = tracing::info_span!("batch", model = %self.name, requests = batch.len() as i64, rows = rows.iter().sum::<usize>() as i64);
        for job in &mut batch {
            // Its wait is over.
            drop(std::mem::replace(&mut job.queue_span, tracing::Span::none()));
            span.follows_from(&job.span);
        }
        let _batch = span.enter();
        let (replies, inputs): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.reply, j.inputs)).unzip();
        let result = match stack(inputs) {
            Ok(stacked) => {
                let _forward = tracing::info_span!("forward").entered();
                let model = &mut self.model;
                self.share.compute(|| model.run(stacked).and_then(|outputs| split(outputs, &rows)))
            }
            Err(e) => Err(e),
        };
        metrics::histogram!("ferroserve_tensor_compute_seconds", "model" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(parts) => {
                for ((reply, outputs), waited) in replies.into_iter().zip(parts).zip(waited) {
                    let _ = reply.send(Ok((outputs, waited)));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(BatchError::LaneFailed(e.to_string())));
                }
            }
        }
    }
}

/// Rows for the next batch: the largest preferred size the waiting rows fill, else the maximum.
fn preferred_limit(preferred: &[usize], available: usize, max_rows: usize) -> usize {
    preferred.iter().copied().filter(|&p| p <= available.min(max_rows)).max().unwrap_or(max_rows)
}

/// Same input names in the same order, same element types, same shapes after the first dimension.
fn stackable(a: &[NamedTensor], b: &[NamedTensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name && x.data.element_type() == y.data.element_type() && x.shape.get(1..) == y.shape.get(1..)
        })
}

/// The requests' inputs stacked along the first dimension (one request: as it is).
fn stack(mut requests: Vec<Vec<NamedTensor>>) -> Result<Vec<NamedTensor>, ModelError> {
    if requests.len() == 1 {
        return Ok(requests.remove(0));
    }
    let mut rest = requests.split_off(1);
    let mut stacked = requests.remove(0);
    for (i, tensor) in stacked.iter_mut().enumerate() {
        for request in &mut rest {
            let part = std::mem::replace(&mut request[i].data, TensorData::U8(Vec::new()));
            tensor.shape[0] += request[i].shape[0];
            tensor.data.append(part)?;
        }
    }
    Ok(stacked)
}

/// Each request's rows of every output (an output must lead with the batch's total rows).
fn split(outputs: Vec<NamedTensor>, rows: &[usize]) -> Result<Vec<Vec<NamedTensor>>, ModelError> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: usize = rows.iter().sum();
    let mut parts: Vec<Vec<NamedTensor>> = vec![Vec::with_capacity(outputs.len()); rows.len()];
    for output in outputs {
        if output.shape.first().map(|d| *d as usize) != Some(total) {
            return Err(ModelError::Backend(format!(
                "output {:?} has shape {:?}: it does not lead with the batch's {total} rows",
                output.name, output.shape
            )));
        }
        let per_row = output.data.len() / total.max(1);
        let mut offset = 0;
        for (part, &n) in parts.iter_mut().zip(rows) {
            let mut shape = output.shape.clone();
            shape[0] = n as i64;
            let data = output.data.slice(offset * per_row, (offset + n) * per_row);
            part.push(NamedTensor { name: output.name.clone(), shape, data });
            offset += n;
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: Vec<i64>, data: Vec<f32>) -> NamedTensor {
        NamedTensor { name: name.into(), shape, data: TensorData::F32(data) }
    }

    fn job(priority: u8, rows: usize, width: i64) -> Job {
        let (reply, _) = oneshot::channel();
        let inputs = vec![t("x", vec![rows as i64, width], vec![0.0; rows * width as usize])];
        let (span, queue_span) = (tracing::Span::none(), tracing::Span::none());
        Job { inputs, rows, priority, enqueued: Instant::now(), deadline: None, reply, span, queue_span }
    }

    #[test]
    fn waiting_jobs_go_by_priority_then_arrival_and_only_stackable_ones_share() {
        let mut q = Waiting::default();
        for (priority, rows, width) in [(2, 1, 4), (0, 1, 4), (1, 1, 3), (0, 2, 4), (1, 1, 4)] {
            q.push(job(priority, rows, width));
        }
        let first = q.pop().unwrap();
        assert_eq!((first.priority, first.rows), (0, 1), "priority 0, the earlier of the two");
        let batch = q.batch(first, 4);
        let taken: Vec<(u8, usize)> = batch.iter().map(|j| (j.priority, j.rows)).collect();
        assert_eq!(taken, vec![(0, 1), (0, 2), (1, 1)], "up to 4 rows of width 4, by priority");
        let rest: Vec<u8> = std::iter::from_fn(|| q.pop()).map(|j| j.priority).collect();
        assert_eq!(rest, vec![1, 2], "the width-3 job and the last one wait");
    }

    #[test]
    fn preferred_sizes_cap_batches_when_enough_rows_wait() {
        assert_eq!(preferred_limit(&[4, 8], 10, 16), 8);
        assert_eq!(preferred_limit(&[4, 8], 5, 16), 4);
        assert_eq!(preferred_limit(&[4, 8], 3, 16), 16, "none filled: up to the maximum");
        assert_eq!(preferred_limit(&[], 10, 16), 16);
    }

    #[test]
    fn stacking_and_splitting_are_inverse() {
        let a = vec![t("x", vec![1, 2], vec![1.0, 2.0])];
        let b = vec![t("x", vec![2, 2], vec![3.0, 4.0, 5.0, 6.0])];
        assert!(stackable(&a, &b));
        assert!(!stackable(&a, &[t("x", vec![1, 3], vec![0.0; 3])]), "other trailing shape");
        assert!(!stackable(&a, &[t("y", vec![1, 2], vec![0.0; 2])]), "other name");
        let stacked = stack(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(stacked[0].shape, vec![3, 2]);
        let parts = split(stacked, &[1, 2]).unwrap();
        assert_eq!(parts, vec![a, b]);
        let wrong = vec![t("y", vec![2], vec![0.0, 0.0])];
        assert!(split(wrong, &[1, 2]).unwrap_err().to_string().contains("does not lead"));
    }
}
