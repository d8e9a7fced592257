//! How fast a model's sequences finish, measured, so a refused request is told when a slot is likely to
//! be free (Retry-After) instead of a fixed guess.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Recent seconds a sequence held its slot (an f64's bits; 0 until measured).
#[derive(Default)]
pub(super) struct Pace {
    slot_secs: AtomicU64,
}

impl Pace {
    /// Records one finished sequence that held its slot for `held`.
    pub fn record(&self, held: Duration) {
        let old = f64::from_bits(self.slot_secs.load(Ordering::Relaxed));
        let secs = held.as_secs_f64();
        let new = if old > 0.0 { 0.8 * old + 0.2 * secs } else { secs };
        self.slot_secs.store(new.to_bits(), Ordering::Relaxed);
    }

    /// When `waiting` requests ahead are likely through `slots` slots.
    pub fn retry_after(&self, waiting: usize, slots: usize) -> Duration {
        retry_after(f64::from_bits(self.slot_secs.load(Ordering::Relaxed)), waiting, slots)
    }
}

/// Whole seconds (1 to 60) until `waiting` requests are through `slots` slots that each take `slot_secs`
/// per sequence; 1 s before anything was measured.
fn retry_after(slot_secs: f64, waiting: usize, slots: usize) -> Duration {
    let secs = (waiting as f64 * slot_secs / slots.max(1) as f64).ceil();
    Duration::from_secs(secs.clamp(1.0, 60.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_follows_the_measured_pace() {
        assert_eq!(retry_after(0.0, 300, 16), Duration::from_secs(1), "unmeasured");
        // 300 waiting, 16 slots, 3 s per sequence: about 57 s of work ahead.
        assert_eq!(retry_after(3.0, 300, 16), Duration::from_secs(57));
        assert_eq!(retry_after(3.0, 1000, 16), Duration::from_secs(60), "capped");
        let pace = Pace::default();
        pace.record(Duration::from_secs(2));
        assert_eq!(pace.retry_after(64, 16), Duration::from_secs(8));
        pace.record(Duration::from_secs(7));
        assert_eq!(pace.retry_after(64, 16), Duration::from_secs(12), "moving average: 0.8 × 2 + 0.2 × 7 = 3 s");
    }
}
