//! Scheduler tests with a recording model: which sequences reached which lane, in what batches.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ferroserve_models::{Embedder, ModelError};

use super::*;

/// Blocks forward passes while closed.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }
}

type Log = Arc<Mutex<Vec<(String, Vec<u32>)>>>;

/// Returns each sequence's first id as its vector; logs every batch (lane, first ids) before the gate.
struct Recorder {
    lane: String,
    log: Log,
    gate: Arc<Gate>,
}

impl Embedder for Recorder {
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.log.lock().unwrap().push((self.lane.clone(), batch.iter().map(|s| s[0]).collect()));
        self.gate.wait();
        Ok(batch.iter().map(|s| vec![s[0] as f32]).collect())
    }
}

struct Harness {
    queue: BatchQueue,
    log: Log,
    gate: Arc<Gate>,
}

fn harness(config: BatchingConfig, lanes: usize, max_batch_size: usize) -> Harness {
    let log = Log::default();
    let gate = Arc::new(Gate::default());
    let specs = (0..lanes)
        .map(|i| LaneSpec {
            name: format!("lane{i}"),
            limits: BatchLimits { max_batch_size, max_batch_tokens: 1 << 20 },
            embedder: Box::new(Recorder { lane: format!("lane{i}"), log: log.clone(), gate: gate.clone() }),
            cpu: None,
        })
        .collect();
    Harness { queue: BatchQueue::start("m", &config, specs), log, gate }
}

impl Harness {
    /// Waits until `n` batches have reached a lane.
    fn wait_batches(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "lanes did not start {n} batches");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    fn seen(&self) -> Vec<u32> {
        self.log.lock().unwrap().iter().flat_map(|(_, ids)| ids.clone()).collect()
    }
}

fn seqs(ids: std::ops::Range<u32>) -> Vec<Vec<u32>> {
    ids.map(|i| vec![i, 7, 7]).collect()
}

#[tokio::test]
async fn splits_large_requests_and_keeps_order_under_concurrency() {
    let h = harness(BatchingConfig::default(), 2, 4);
    h.gate.open();
    let futures: Vec<_> = (0..8u32).map(|r| h.queue.submit(seqs(r * 100..r * 100 + 10), 1, None).unwrap()).collect();
    for (r, f) in futures.into_iter().enumerate() {
        let got: Vec<f32> = f.await.unwrap().vectors.into_iter().map(|v| v[0]).collect();
        let want: Vec<f32> = (0..10).map(|i| (r * 100 + i) as f32).collect();
        assert_eq!(got, want);
    }
    assert!(h.log.lock().unwrap().iter().all(|(_, ids)| ids.len() <= 4), "batches respect max_batch_size");
}

#[tokio::test]
async fn higher_priority_is_served_first_under_contention() {
    let h = harness(BatchingConfig::default(), 1, 2);
    let first = h.queue.submit(seqs(0..1), 1, None).unwrap();
    h.wait_batches(1); // the lane is busy with request 0
    let low = h.queue.submit(seqs(10..12), 2, None).unwrap();
    let normal = h.queue.submit(seqs(20..22), 1, None).unwrap();
    let high = h.queue.submit(seqs(30..32), 0, None).unwrap();
    h.gate.open();
    for f in [first, low, normal, high] {
        f.await.unwrap();
    }
    assert_eq!(h.seen(), [0, 30, 31, 20, 21, 10, 11]);
}

#[tokio::test]
async fn expired_and_cancelled_requests_never_reach_a_lane() {
    let h = harness(BatchingConfig::default(), 1, 8);
    let busy = h.queue.submit(seqs(0..1), 1, None).unwrap();
    h.wait_batches(1);
    let expiring = h.queue.submit(seqs(10..13), 1, Some(Instant::now() + Duration::from_millis(20))).unwrap();
    let abandoned = h.queue.submit(seqs(20..22), 1, None).unwrap();
    drop(abandoned); // the caller went away
    let kept = h.queue.submit(seqs(30..31), 1, None).unwrap();
    std::thread::sleep(Duration::from_millis(40));
    h.gate.open();
    busy.await.unwrap();
    kept.await.unwrap();
    assert!(matches!(expiring.await, Err(BatchError::DeadlineExceeded)));
    assert_eq!(h.seen(), [0, 30], "only the busy and the kept request were computed");
}

#[tokio::test]
async fn full_queue_is_refused_at_once_while_admitted_work_completes() {
    let config = BatchingConfig { max_queue_size: 4, ..BatchingConfig::default() };
    let h = harness(config, 1, 2);
    let busy = h.queue.submit(seqs(0..1), 1, None).unwrap();
    h.wait_batches(1);
    let admitted: Vec<_> = (0..4).map(|i| h.queue.submit(seqs(i * 10..i * 10 + 1), 1, None).unwrap()).collect();
    let started = Instant::now();
    let refused = h.queue.submit(seqs(90..91), 1, None).err().unwrap();
    assert!(matches!(refused, BatchError::Overloaded { retry_after, .. } if retry_after >= Duration::from_secs(1)));
    assert!(started.elapsed() < Duration::from_secs(1), "refusal does not wait");
    h.gate.open();
    busy.await.unwrap();
    for f in admitted {
        assert_eq!(f.await.unwrap().vectors.len(), 1);
    }
    // A request larger than the whole queue still gets in when the queue is empty.
    assert_eq!(h.queue.submit(seqs(0..9), 1, None).unwrap().await.unwrap().vectors.len(), 9);
    assert!(matches!(h.queue.submit(seqs(0..1), 5, None).err().unwrap(), BatchError::InvalidInput(_)));
    assert!(matches!(h.queue.submit(Vec::new(), 1, None).err().unwrap(), BatchError::InvalidInput(_)));
}

#[tokio::test]
async fn every_lane_takes_work() {
    let h = harness(BatchingConfig::default(), 2, 1);
    let first = h.queue.submit(seqs(0..1), 1, None).unwrap();
    h.wait_batches(1); // lane A is blocked on the gate...
    let second = h.queue.submit(seqs(1..2), 1, None).unwrap();
    h.wait_batches(2); // ...so lane B must take the next one.
    h.gate.open();
    first.await.unwrap();
    second.await.unwrap();
    let mut lanes: Vec<String> = h.log.lock().unwrap().iter().map(|(lane, _)| lane.clone()).collect();
    lanes.sort();
    assert_eq!(lanes, ["lane0", "lane1"], "one batch each");
}

#[tokio::test]
async fn delay_window_waits_for_a_fuller_batch() {
    let config = BatchingConfig { max_queue_delay_ms: 60_000, ..BatchingConfig::default() };
    let h = harness(config, 1, 4);
    h.gate.open();
    // Four single requests fill a batch: it goes at once despite the long window.
    let singles: Vec<_> = (0..4).map(|i| h.queue.submit(seqs(i..i + 1), 1, None).unwrap()).collect();
    for f in singles {
        f.await.unwrap();
    }
    let batches: Vec<usize> = h.log.lock().unwrap().iter().map(|(_, ids)| ids.len()).collect();
    assert_eq!(batches, [4]);
}

#[tokio::test]
async fn response_reports_queue_and_compute_time() {
    let h = harness(BatchingConfig::default(), 1, 4);
    let f = h.queue.submit(seqs(0..1), 1, None).unwrap();
    h.wait_batches(1);
    std::thread::sleep(Duration::from_millis(20));
    h.gate.open();
    let out = f.await.unwrap();
    assert!(out.compute_time >= Duration::from_millis(20), "{:?}", out.compute_time);
    assert!(out.queue_time < out.compute_time);
}
