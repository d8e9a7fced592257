//! Token-bucket arithmetic, the same in this process and in the Redis script: a bucket holds up to
//! `capacity`, refills at `per_sec`, and a request of `cost` passes when the bucket holds at least
//! `min(cost, capacity)` (so one request bigger than the bucket still passes when it is full, and the bucket
//! goes below zero: the debt delays the next ones).

use std::time::{Duration, Instant};

/// One limit: how much a bucket holds, how fast it refills, what this request costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub capacity: f64,
    pub per_sec: f64,
    pub cost: f64,
}

impl Limit {
    /// Whether a bucket at `level` lets this request pass.
    pub fn passes(&self, level: f64) -> bool {
        level >= self.cost.min(self.capacity)
    }

    /// How long until a bucket at `level` lets this request pass.
    pub fn wait(&self, level: f64) -> Duration {
        let missing = self.cost.min(self.capacity) - level;
        Duration::from_secs_f64((missing / self.per_sec).max(0.0))
    }

    /// How long until a bucket at `level` is full again.
    pub fn until_full(&self, level: f64) -> Duration {
        Duration::from_secs_f64(((self.capacity - level) / self.per_sec).max(0.0))
    }
}

/// A bucket kept in this process.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(limit: &Limit, now: Instant) -> Self {
        Bucket { level: limit.capacity, at: now }
    }

    /// The level at `now`, refilled since the last look.
    pub fn level(&mut self, limit: &Limit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * limit.per_sec).min(limit.capacity);
        self.at = now;
        self.level
    }

    pub fn take(&mut self, cost: f64) -> f64 {
        self.level -= cost;
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_run_into_debt() {
        let limit = Limit { capacity: 10.0, per_sec: 5.0, cost: 4.0 };
        let start = Instant::now();
        let mut bucket = Bucket::full(&limit, start);
        assert!(limit.passes(bucket.level(&limit, start)));
        assert_eq!(bucket.take(4.0), 6.0);
        assert_eq!(bucket.take(4.0), 2.0);
        assert!(!limit.passes(bucket.level(&limit, start)));
        assert_eq!(limit.wait(2.0), Duration::from_millis(400));
        // 0.4 s later it holds 4 again.
        assert!(limit.passes(bucket.level(&limit, start + Duration::from_millis(400))));
        // Never above capacity.
        assert_eq!(bucket.level(&limit, start + Duration::from_secs(60)), 10.0);
        // A request bigger than the bucket passes only when it is full, and leaves a debt.
        let big = Limit { cost: 25.0, ..limit };
        assert!(big.passes(10.0) && !big.passes(9.9));
        assert_eq!(bucket.take(25.0), -15.0);
        assert_eq!(limit.until_full(-15.0), Duration::from_secs(5));
    }
}
