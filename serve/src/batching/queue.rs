//! The scheduler's state: one FIFO per priority level of sequences waiting, and the choice of the next
//! batch for a lane.
//!
//! A batch starts from the oldest sequence of the most urgent non-empty level (so every sequence is
//! eventually served in its level's order), then fills up with the sequences closest to it in length, level
//! by level in priority order, while it stays within the lane's `max_batch_size` and `max_batch_tokens`
//! (padded cost: longest × count). Grouping by length cuts padding; the anchor keeps it fair within a
//! level. Priority is strict: under sustained load at a more urgent level, less urgent levels wait (their
//! deadlines still bound how long).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::pending::Pending;

/// One sequence of an admitted request.
pub(super) struct Item {
    pub ids: Vec<u32>,
    /// Its index in the request's inputs.
    pub slot: usize,
    pub request: Arc<Pending>,
}

/// The most one forward pass of a lane may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
}

/// Items removed without compute.
#[derive(Default)]
pub(super) struct Purged {
    pub expired: Vec<Arc<Pending>>,
    pub cancelled: usize,
}

pub(super) struct Levels {
    levels: Vec<VecDeque<Item>>,
    len: usize,
}

impl Levels {
    pub fn new(levels: u8) -> Self {
        Levels { levels: (0..levels.max(1)).map(|_| VecDeque::new()).collect(), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, priority: u8, items: impl IntoIterator<Item = Item>) {
        let last = self.levels.len() - 1;
        let queue = &mut self.levels[usize::from(priority).min(last)];
        let before = queue.len();
        queue.extend(items);
        self.len += queue.len() - before;
    }

    /// When the oldest waiting sequence was admitted.
    pub fn oldest(&self) -> Option<Instant> {
        self.levels.iter().filter_map(|q| q.front()).map(|i| i.request.admitted).min()
    }

    /// Removes sequences whose deadline passed (returning their requests, to be failed once) or whose
    /// caller went away.
    pub fn purge(&mut self, now: Instant) -> Purged {
        let mut purged = Purged::default();
        for queue in &mut self.levels {
            queue.retain(|item| {
                if item.request.expired(now) {
                    if !purged.expired.iter().any(|p| Arc::ptr_eq(p, &item.request)) {
                        purged.expired.push(item.request.clone());
                    }
                    false
                } else if item.request.abandoned() {
                    purged.cancelled += 1;
                    false
                } else {
                    true
                }
            });
        }
        self.len = self.levels.iter().map(VecDeque::len).sum();
        purged
    }

    /// Takes the next batch (see the module doc). Empty only when nothing waits.
    pub fn select(&mut self, limits: BatchLimits) -> Vec<Item> {
        let Some(top) = self.levels.iter().position(|q| !q.is_empty()) else { return Vec::new() };
        let Some(anchor) = self.levels[top].pop_front() else { return Vec::new() };
        let anchor_len = anchor.ids.len();
        let mut longest = anchor_len;
        let mut batch = vec![anchor];
        for queue in &mut self.levels[top..] {
            if batch.len() >= limits.max_batch_size {
                break;
            }
            // Closest in length first; on ties the older (stable sort).
            let mut order: Vec<usize> = (0..queue.len()).collect();
            order.sort_by_key(|&i| queue[i].ids.len().abs_diff(anchor_len));
            let mut chosen = Vec::new();
            for i in order {
                let count = batch.len() + chosen.len();
                if count >= limits.max_batch_size {
                    break;
                }
                let with = longest.max(queue[i].ids.len());
                if with * (count + 1) <= limits.max_batch_tokens {
                    longest = with;
                    chosen.push(i);
                }
            }
            chosen.sort_unstable_by(|a, b| b.cmp(a));
            batch.extend(chosen.into_iter().filter_map(|i| queue.remove(i)));
        }
        self.len -= batch.len();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    type Rx = oneshot::Receiver<Result<super::super::Embedded, super::super::BatchError>>;

    fn request(n: usize, deadline: Option<Instant>) -> (Arc<Pending>, Rx) {
        let (tx, rx) = oneshot::channel();
        (Arc::new(Pending::new(n, deadline, tx)), rx)
    }

    fn items(request: &Arc<Pending>, lens: &[usize]) -> Vec<Item> {
        lens.iter()
            .enumerate()
            .map(|(slot, &len)| Item { ids: vec![slot as u32; len], slot, request: request.clone() })
            .collect()
    }

    const WIDE: BatchLimits = BatchLimits { max_batch_size: 100, max_batch_tokens: 100_000 };

    #[test]
    fn higher_priority_goes_first_and_fills_before_lower() {
        let mut levels = Levels::new(3);
        let (low, _l) = request(2, None);
        let (high, _h) = request(2, None);
        levels.push(2, items(&low, &[5, 5]));
        levels.push(0, items(&high, &[5, 5]));
        let batch = levels.select(BatchLimits { max_batch_size: 3, ..WIDE });
        let from_high: Vec<bool> = batch.iter().map(|i| Arc::ptr_eq(&i.request, &high)).collect();
        assert_eq!(from_high, [true, true, false]);
        assert!(Arc::ptr_eq(&levels.select(WIDE)[0].request, &low));
        assert_eq!(levels.len(), 0);
        levels.push(2, items(&low, &[5]));
        assert_eq!(levels.len(), 1);
    }

    #[test]
    fn groups_similar_lengths_within_the_token_budget() {
        let mut levels = Levels::new(1);
        let (r, _rx) = request(6, None);
        levels.push(0, items(&r, &[10, 100, 12, 98, 11, 9]));
        // Anchor is the oldest (10 tokens); budget 4 × 12 = 48 keeps out the ~100-token ones.
        let batch = levels.select(BatchLimits { max_batch_size: 8, max_batch_tokens: 48 });
        let mut lens: Vec<usize> = batch.iter().map(|i| i.ids.len()).collect();
        lens.sort();
        assert_eq!(lens, [9, 10, 11, 12]);
        // The long ones form their own batch; one sequence over budget still goes alone.
        let batch = levels.select(BatchLimits { max_batch_size: 8, max_batch_tokens: 150 });
        assert_eq!(batch.iter().map(|i| i.ids.len()).collect::<Vec<_>>(), [100]);
        assert_eq!(levels.len(), 1);
    }

    #[test]
    fn purge_drops_expired_and_abandoned() {
        let mut levels = Levels::new(1);
        let past = Instant::now() - Duration::from_millis(1);
        let (expired, _e) = request(2, Some(past));
        let (gone, gone_rx) = request(1, None);
        let (live, _l) = request(1, Some(Instant::now() + Duration::from_secs(60)));
        levels.push(0, items(&expired, &[3, 3]));
        levels.push(0, items(&gone, &[3]));
        levels.push(0, items(&live, &[3]));
        drop(gone_rx);
        let purged = levels.purge(Instant::now());
        assert_eq!((purged.expired.len(), purged.cancelled), (1, 1));
        assert_eq!(levels.len(), 1);
    }
}
