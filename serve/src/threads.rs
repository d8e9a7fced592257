//! The thread budget: how the machine's cores are shared between the async runtime (I/O: parsing,
//! routing, encoding) and the lanes' compute pools, so busy lanes never oversubscribe the cores.
//!
//! CPU lanes that do not set `threads` share out the cores left by those that do (at least one each).
//! GPU lanes need one driving thread and no pool. The runtime gets one worker per four cores (at least
//! one): it mostly waits on sockets. The start-up log shows the plan.

use ferroserve_models::DeviceSpec;

use crate::batching::LaneConfig;
use crate::repository::ModelEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadBudget {
    pub cores: usize,
    /// Worker threads of the async runtime.
    pub io_threads: usize,
    /// Compute threads of a CPU lane that does not set its own.
    pub default_lane_threads: usize,
    /// Compute threads of every CPU lane together.
    pub compute_threads: usize,
}

impl ThreadBudget {
    pub fn plan(models: &[ModelEntry], io_threads: Option<usize>, cores: usize) -> Self {
        let cpu_lanes = || models.iter().flat_map(|m| &m.lanes).filter(|l| l.device == DeviceSpec::Cpu);
        let explicit: usize = cpu_lanes().filter_map(|l| l.threads).sum();
        let implicit = cpu_lanes().filter(|l| l.threads.is_none()).count();
        let default_lane_threads = (cores.saturating_sub(explicit) / implicit.max(1)).max(1);
        let compute_threads = explicit + implicit * default_lane_threads;
        let io_threads = io_threads.unwrap_or((cores / 4).max(1)).max(1);
        ThreadBudget { cores, io_threads, default_lane_threads, compute_threads }
    }

    /// Compute threads of one lane (0 for GPU lanes: they need no pool).
    pub fn lane_threads(&self, lane: &LaneConfig) -> usize {
        match lane.device {
            DeviceSpec::Cpu => lane.threads.unwrap_or(self.default_lane_threads),
            DeviceSpec::Cuda(_) => 0,
        }
    }

    pub fn log(&self) {
        tracing::info!(
            cores = self.cores,
            io_threads = self.io_threads,
            compute_threads = self.compute_threads,
            default_lane_threads = self.default_lane_threads,
            "thread budget: lanes run on their own compute pools; the async runtime only does I/O"
        );
        if self.compute_threads > self.cores {
            tracing::warn!(
                compute_threads = self.compute_threads,
                cores = self.cores,
                "lanes ask for more compute threads than there are cores: busy lanes will slow each other"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(lanes: &str) -> ModelEntry {
        let dir = std::env::temp_dir().join(format!("ferroserve-threads-{}-{}", std::process::id(), lanes.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("m.toml");
        std::fs::write(
            &file,
            format!("name = \"m\"\ntask = \"embedding\"\nbackend = \"candle\"\npath = \".\"\n{lanes}"),
        )
        .unwrap();
        ModelEntry::from_file(&file).unwrap()
    }

    #[test]
    fn cores_are_shared_between_cpu_lanes() {
        let one = model("");
        assert_eq!(
            ThreadBudget::plan(&[one], None, 2),
            ThreadBudget { cores: 2, io_threads: 1, default_lane_threads: 2, compute_threads: 2 }
        );
        let two = model("[[lanes]]\ndevice = \"cpu\"\n[[lanes]]\ndevice = \"cpu\"\n[[lanes]]\ndevice = \"cuda:0\"\n");
        let b = ThreadBudget::plan(std::slice::from_ref(&two), None, 8);
        assert_eq!((b.default_lane_threads, b.compute_threads, b.io_threads), (4, 8, 2));
        assert_eq!(b.lane_threads(&two.lanes[2]), 0);
        let pinned = model("[[lanes]]\ndevice = \"cpu\"\nthreads = 3\n[[lanes]]\ndevice = \"cpu\"\n");
        let b = ThreadBudget::plan(&[pinned], Some(3), 4);
        assert_eq!((b.default_lane_threads, b.compute_threads, b.io_threads), (1, 4, 3));
    }
}
