//! Dynamic batching: a model's bounded, prioritized queue of sequences and the lanes that serve it.
//!
//! Requests are admitted whole or refused at once when the queue is full (never an unbounded queue). Each
//! sequence of an admitted request waits in its priority level's FIFO. Every lane of the model — a
//! dedicated thread that owns one model copy on one device (CPU threads or a GPU) — pulls from the same
//! queue: when free, it takes a batch sized for itself (see `queue` for the choice), waiting up to
//! `max_queue_delay_ms` for a batch that is not yet full. Sequences whose deadline passed or whose caller
//! went away are dropped before compute. Results are reassembled per request in input order.

mod config;
mod error;
mod lane;
mod pending;
mod queue;
mod speed;
mod tensors;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferroserve_models::Embedder;
use ferroserve_models::cpu_share::{CpuShare, LaneCpu};
use tokio::sync::oneshot;

pub use config::{BatchingConfig, LaneConfig};
pub use error::BatchError;
use lane::LaneWorker;
use pending::Pending;
use queue::{Item, Levels};
pub use tensors::{TensorAnswer, TensorBatcher};

pub use pending::Embedded;
pub use queue::BatchLimits;

/// A lane to start: its name (for logs and metrics), its batch limits and the model copy it owns.
pub struct LaneSpec {
    pub name: String,
    pub limits: BatchLimits,
    pub embedder: Box<dyn Embedder>,
    /// How a CPU lane shares the cores with other lanes (`None` on a GPU; see `cpu_share.rs`).
    pub cpu: Option<LaneCpu>,
}

/// The scheduling state every lane of a model shares.
struct Shared {
    model: String,
    config: BatchingConfig,
    state: Mutex<State>,
    wake: Condvar,
    /// Each lane's recent seconds per sequence (an f64's bits; 0 until measured): for lanes of different
    /// speeds (see `speed`) and Retry-After hints.
    lane_speed: Vec<AtomicU64>,
}

struct State {
    levels: Levels,
    closed: bool,
}

/// The admitting side of a model's queue. Dropping it lets the lanes finish what is queued, then stop.
pub struct BatchQueue {
    shared: Arc<Shared>,
}

impl BatchQueue {
    /// Creates the queue and starts one thread per lane.
    pub fn start(model: &str, config: &BatchingConfig, lanes: Vec<LaneSpec>) -> Self {
        let shared = Arc::new(Shared {
            model: model.to_string(),
            config: config.clone(),
            state: Mutex::new(State { levels: Levels::new(config.priority_levels), closed: false }),
            wake: Condvar::new(),
            lane_speed: lanes.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        for (index, lane) in lanes.into_iter().enumerate() {
            let (name, embedder, limits, cpu) = (lane.name, lane.embedder, lane.limits, lane.cpu);
            let share = CpuShare::new(cpu);
            let worker = LaneWorker { index, name, embedder, limits, share, shared: shared.clone() };
            let spawned = std::thread::Builder::new().name(format!("lane-{}", worker.name)).spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(model, error = %e, "could not start a lane thread");
            }
        }
        BatchQueue { shared }
    }

    /// Admits `seqs` as one request, or refuses it at once when the queue is full. The future resolves
    /// when every sequence has its vector, or at the first failure (including a passed deadline).
    pub fn submit(
        &self,
        seqs: Vec<Vec<u32>>,
        priority: u8,
        deadline: Option<Instant>,
    ) -> Result<impl Future<Output = Result<Embedded, BatchError>> + use<>, BatchError> {
        let shared = &self.shared;
        if seqs.is_empty() {
            // Nothing would ever complete it.
            return Err(BatchError::InvalidInput("a request needs at least one input".into()));
        }
        if priority >= shared.config.priority_levels {
            return Err(BatchError::InvalidInput(format!(
                "priority {priority} is out of range: model {:?} has levels 0 (first) to {}",
                shared.model,
                shared.config.priority_levels - 1
            )));
        }
        let (reply, rx) = oneshot::channel();
        let request = Arc::new(Pending::new(seqs.len(), deadline, reply));
        let mut state = shared.lock_state();
        if state.closed {
            return Err(BatchError::ShuttingDown);
        }
        let waiting = state.levels.len();
        if waiting > 0 && waiting + seqs.len() > shared.config.max_queue_size {
            drop(state);
            metrics::counter!("ferroserve_rejected_total", "model" => shared.model.clone(), "reason" => "queue_full")
                .increment(1);
            return Err(BatchError::Overloaded {
                model: shared.model.clone(),
                retry_after: shared.retry_after(waiting),
            });
        }
        let items = seqs.into_iter().enumerate().map(|(slot, ids)| Item { ids, slot, request: request.clone() });
        state.levels.push(priority, items);
        shared.record_depth(state.levels.len());
        drop(state);
        shared.wake.notify_all();
        Ok(async move { rx.await.map_err(|_| BatchError::LaneFailed("the lane stopped before answering".into()))? })
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        self.shared.lock_state().closed = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks until a batch for lane `lane` with `limits` is ready; `None` once the queue is closed and empty.
    fn take_batch(&self, lane: usize, limits: BatchLimits) -> Option<Vec<Item>> {
        let delay = Duration::from_millis(self.config.max_queue_delay_ms);
        let mut state = self.lock_state();
        loop {
            let now = Instant::now();
            self.drop_unservable(&mut state, now);
            let waiting = state.levels.len();
            if waiting == 0 {
                if state.closed {
                    return None;
                }
                state = self.wake.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // A batch that is not full yet may wait for company, up to the delay after its oldest sequence.
            if waiting < limits.max_batch_size
                && !state.closed
                && let Some(until) = state.levels.oldest().map(|t| t + delay)
                && now < until
            {
                state = self.wake.wait_timeout(state, until - now).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
                continue;
            }
            // A much slower lane leaves the work to faster ones unless the backlog is deep.
            if !state.closed
                && let Some(pause) = self.hold_back(lane, waiting, limits.max_batch_size)
            {
                state = self.wake.wait_timeout(state, pause).map(|(s, _)| s).unwrap_or_else(|p| p.into_inner().0);
                continue;
            }
            let batch = state.levels.select(limits);
            self.record_depth(state.levels.len());
            let now = Instant::now();
            for item in &batch {
                metrics::histogram!("ferroserve_queue_time_seconds", "model" => self.model.clone())
                    .record(now.saturating_duration_since(item.request.admitted).as_secs_f64());
            }
            return Some(batch);
        }
    }

    /// Fails expired requests and forgets abandoned ones, before any lane sees them.
    fn drop_unservable(&self, state: &mut State, now: Instant) {
        let before = state.levels.len();
        let purged = state.levels.purge(now);
        let removed = (before - state.levels.len()) as u64;
        if removed == 0 {
            return;
        }
        let cancelled = purged.cancelled as u64;
        let expired = removed - cancelled;
        for request in purged.expired {
            request.fail(BatchError::DeadlineExceeded);
        }
        for (reason, n) in [("expired", expired), ("cancelled", cancelled)] {
            if n > 0 {
                metrics::counter!("ferroserve_dropped_total", "model" => self.model.clone(), "reason" => reason)
                    .increment(n);
            }
        }
        self.record_depth(state.levels.len());
    }

    fn speeds(&self) -> Vec<f64> {
        self.lane_speed.iter().map(|s| f64::from_bits(s.load(Ordering::Relaxed))).collect()
    }

    fn hold_back(&self, lane: usize, waiting: usize, max_batch: usize) -> Option<Duration> {
        let mut speeds = self.speeds();
        if lane >= speeds.len() {
            return None;
        }
        let mine = speeds.swap_remove(lane);
        speed::hold_back(mine, &speeds, waiting, max_batch)
    }

    fn record_batch(&self, lane: usize, size: usize, elapsed: Duration) {
        let per = elapsed.as_secs_f64() / size.max(1) as f64;
        if let Some(speed) = self.lane_speed.get(lane) {
            let old = f64::from_bits(speed.load(Ordering::Relaxed));
            let new = if old > 0.0 { 0.8 * old + 0.2 * per } else { per };
            speed.store(new.to_bits(), Ordering::Relaxed);
        }
    }

    /// How long until `waiting` sequences are likely served, in whole seconds (at least one).
    fn retry_after(&self, waiting: usize) -> Duration {
        // Sequences per second of all lanes; 200 per lane until measured.
        let rate: f64 = self.speeds().iter().map(|&s| if s > 0.0 { 1.0 / s } else { 200.0 }).sum();
        let secs = (waiting as f64 / rate.max(1.0)).ceil().clamp(1.0, 60.0);
        Duration::from_secs(secs as u64)
    }

    fn record_depth(&self, depth: usize) {
        metrics::gauge!("ferroserve_queue_depth", "model" => self.model.clone()).set(depth as f64);
    }
}

#[cfg(test)]
mod tests;
