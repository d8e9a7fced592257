//! Lanes of different speeds sharing one queue (a GPU beside CPU lanes): a slow lane takes only work that
//! the faster lanes would not reach sooner. Without this, a CPU lane grabs a batch that a GPU would finish
//! a hundred times faster, and every request with a sequence in that batch waits for the CPU.

use std::time::Duration;

/// How long a lane should hold back before it looks again, or `None` to take a batch now.
///
/// `mine` and `others` are seconds per sequence measured on recent batches (0 when not measured yet);
/// `waiting` is the queue's length and `max_batch` this lane's batch limit. Only lanes at least twice as
/// fast count as faster; a lane takes work when it would finish a batch before the faster lanes could
/// drain the queue.
pub fn hold_back(mine: f64, others: &[f64], waiting: usize, max_batch: usize) -> Option<Duration> {
    if mine <= 0.0 {
        return None;
    }
    let faster_rate: f64 = others.iter().filter(|&&o| o > 0.0 && o * 2.0 < mine).map(|o| 1.0 / o).sum();
    if faster_rate == 0.0 {
        return None;
    }
    let drain = waiting as f64 / faster_rate;
    let my_batch = waiting.min(max_batch) as f64 * mine;
    if my_batch < drain { None } else { Some(Duration::from_secs_f64(drain.clamp(0.000_5, 0.05))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPU: f64 = 0.000_05; // 20,000 sequences/s
    const CPU: f64 = 0.003; // 333 sequences/s

    #[test]
    fn lanes_of_similar_speed_never_hold_back() {
        assert_eq!(hold_back(CPU, &[CPU * 1.5], 10, 32), None);
        assert_eq!(hold_back(CPU, &[], 10, 32), None);
        assert_eq!(hold_back(0.0, &[GPU], 10, 32), None, "an unmeasured lane takes work to get measured");
        assert_eq!(hold_back(GPU, &[CPU], 10, 256), None, "the fast lane never waits for the slow one");
    }

    #[test]
    fn a_slow_lane_helps_only_with_a_deep_backlog() {
        // 100 waiting: the GPU drains them in 5 ms; the CPU needs 96 ms for a batch of 32.
        let wait = hold_back(CPU, &[GPU], 100, 32).expect("the CPU lane holds back");
        assert!(wait <= Duration::from_millis(50));
        // 10,000 waiting: the GPU needs 500 ms; the CPU finishes a batch in 96 ms and should help.
        assert_eq!(hold_back(CPU, &[GPU], 10_000, 32), None);
    }
}
