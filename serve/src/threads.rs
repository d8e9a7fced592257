//! The thread budget: how the machine's cores are shared between the async runtime (I/O: parsing,
//! routing, encoding) and the lanes' compute pools, and between lanes that compute at the same time.
//!
//! ONNX Runtime lanes that do not set `threads` run on one pool the process shares (ONNX Runtime's global pool,
//! every core): a lone busy model gets all of them, several busy ones share them. Its idle threads spin (wait
//! busily for the next parallel section) only when every CPU lane runs on it: spinning makes a batch of one
//! text 10-35% faster, but spinning threads took two thirds of the language model's decode speed
//! (benches/backends.sh). Where it does not spin, each of its models gets a second session on a pool of its
//! own that spins during its runs (made when the model is first used alone), and a step that finds no other
//! CPU lane busy runs there (`onnx_solo_sessions`; `ferroserve_models::onnx`, `solo.rs`). Other CPU lanes that do not set `threads` share out the cores left by those that do
//! (at least one each). GPU lanes need one driving thread and no pool. The runtime gets one worker per core:
//! idle workers sleep, so it costs busy lanes nothing, and answers that never reach a lane (cache hits,
//! streamed tokens) use the cores idle lanes leave.
//!
//! Busy lanes share the cores by their `weight` (default 1), through `cpu_share.rs`: each CPU lane's threads
//! (its own, its pool's, and for ONNX lanes on the shared pool that pool's, at the heaviest weight among them)
//! get a nice value relative to the heaviest lane, and a lighter lane rests after each step while a heavier one
//! is busy; a lane alone still gets every core. The pools are not cut to fit each other: measured on two
//! cores, pinning the language model and the embedding lanes to one core each gave both the same speed as
//! letting them share both (benches/RESULTS.md), and a pool sized to every core is what a lone busy lane needs.
//! The start-up log shows the plan.

use ferroserve_models::cpu_share::{self, LaneCpu};
use ferroserve_models::{Backend, DeviceSpec};

use crate::batching::LaneConfig;
use crate::repository::ModelEntry;

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadBudget {
    pub cores: usize,
    /// Worker threads of the async runtime.
    pub io_threads: usize,
    /// Compute threads of a CPU lane that does not set its own.
    pub default_lane_threads: usize,
    /// Compute threads of every CPU lane together (the shared pool counted once).
    pub compute_threads: usize,
    /// Threads of the pool ONNX Runtime lanes share (0 when no lane uses it).
    pub shared_pool_threads: usize,
    /// Whether the shared pool's idle threads spin: only when every CPU lane runs on it.
    pub shared_pool_spins: bool,
    /// Whether the models on a shared pool that does not spin have a second session on a spinning pool of
    /// their own, for the steps that find no other CPU lane busy (`onnx_solo_sessions`, on a machine of more
    /// than one core).
    pub solo_sessions: bool,
    /// The heaviest `weight` of a CPU lane: lanes at it keep nice 0, lighter ones are lowered from there.
    pub heaviest_weight: f64,
    /// Nice value of the shared pool's threads (the heaviest weight among its lanes against `heaviest_weight`).
    pub shared_pool_nice: i32,
}

/// A lane's weight (default 1).
fn weight(lane: &LaneConfig) -> f64 {
    lane.weight.unwrap_or(1.0)
}

/// Whether `lane` of `model` runs on the shared ONNX Runtime pool: an ONNX lane on the CPU without `threads`.
fn on_shared_pool(model: &ModelEntry, lane: &LaneConfig) -> bool {
    lane.device == DeviceSpec::Cpu
        && lane.threads.is_none()
        && lane.backend.unwrap_or(model.model.backend) == Backend::Onnx
}

impl ThreadBudget {
    /// The budget of `models` on `cores`; `io_threads` and `solo_sessions` as the server's configuration says.
    pub fn plan(models: &[ModelEntry], io_threads: Option<usize>, solo_sessions: bool, cores: usize) -> Self {
        let cpu_lanes = || {
            models
                .iter()
                .flat_map(|m| m.lanes.iter().map(move |l| (m, l)))
                .filter(|(m, l)| l.device == DeviceSpec::Cpu && !on_shared_pool(m, l))
        };
        let explicit: usize = cpu_lanes().filter_map(|(_, l)| l.threads).sum();
        let implicit = cpu_lanes().filter(|(_, l)| l.threads.is_none()).count();
        let default_lane_threads = (cores.saturating_sub(explicit) / implicit.max(1)).max(1);
        let shared = models.iter().any(|m| m.lanes.iter().any(|l| on_shared_pool(m, l)));
        let shared_pool_threads = if shared { cores } else { 0 };
        let shared_pool_spins = shared && cpu_lanes().next().is_none();
        let compute_threads = explicit + implicit * default_lane_threads + shared_pool_threads;
        let io_threads = io_threads.unwrap_or(cores).max(1);
        let all_cpu_lanes = models.iter().flat_map(|m| m.lanes.iter().map(move |l| (m, l)));
        let all_cpu_lanes = all_cpu_lanes.filter(|(_, l)| l.device == DeviceSpec::Cpu);
        let heaviest_weight = all_cpu_lanes.clone().map(|(_, l)| weight(l)).fold(1.0, f64::max);
        let pool_weight =
            all_cpu_lanes.filter(|(m, l)| on_shared_pool(m, l)).map(|(_, l)| weight(l)).fold(0.0, f64::max);
        ThreadBudget {
            cores,
            io_threads,
            default_lane_threads,
            compute_threads,
            shared_pool_threads,
            shared_pool_spins,
            solo_sessions: solo_sessions && shared && !shared_pool_spins && cores > 1,
            heaviest_weight,
            shared_pool_nice: cpu_share::nice_for(pool_weight, heaviest_weight),
        }
    }

    /// How one CPU lane shares the cores: its threads' nice value from its weight against the heaviest lane's.
    /// `None` for a GPU lane: its driving thread waits on the device and is never lowered or rested.
    pub fn lane_cpu(&self, lane: &LaneConfig) -> Option<LaneCpu> {
        (lane.device == DeviceSpec::Cpu).then(|| {
            let weight = weight(lane);
            LaneCpu { nice: cpu_share::nice_for(weight, self.heaviest_weight), weight }
        })
    }

    /// Compute threads of one lane of `model`: 0 for a lane on the shared pool (its backend is told to use it)
    /// and for GPU lanes (they need no pool).
    pub fn lane_threads(&self, model: &ModelEntry, lane: &LaneConfig) -> usize {
        match lane.device {
            _ if on_shared_pool(model, lane) => 0,
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
            shared_pool_threads = self.shared_pool_threads,
            shared_pool_spins = self.shared_pool_spins,
            solo_sessions = self.solo_sessions,
            heaviest_weight = self.heaviest_weight,
            shared_pool_nice = self.shared_pool_nice,
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
            ThreadBudget::plan(&[one], None, true, 2),
            ThreadBudget {
                cores: 2,
                io_threads: 2,
                default_lane_threads: 2,
                compute_threads: 2,
                shared_pool_threads: 0,
                shared_pool_spins: false,
                solo_sessions: false,
                heaviest_weight: 1.0,
                shared_pool_nice: 0,
            }
        );
        let two = model("[[lanes]]\ndevice = \"cpu\"\n[[lanes]]\ndevice = \"cpu\"\n[[lanes]]\ndevice = \"cuda:0\"\n");
        let b = ThreadBudget::plan(std::slice::from_ref(&two), None, true, 8);
        assert_eq!((b.default_lane_threads, b.compute_threads, b.io_threads), (4, 8, 8));
        assert_eq!(b.lane_threads(&two, &two.lanes[2]), 0);
        let pinned = model("[[lanes]]\ndevice = \"cpu\"\nthreads = 3\n[[lanes]]\ndevice = \"cpu\"\n");
        let b = ThreadBudget::plan(&[pinned], Some(3), true, 4);
        assert_eq!((b.default_lane_threads, b.compute_threads, b.io_threads), (1, 4, 3));
    }

    #[test]
    fn onnx_lanes_without_threads_share_one_pool_of_every_core() {
        // Four ONNX lanes (one pinned to 1 thread) and one Candle lane on 4 cores: the Candle lane gets the 3
        // cores the pinned lane leaves, the three others share one pool of all 4 cores.
        let onnx = "[[lanes]]\ndevice = \"cpu\"\nbackend = \"onnx\"\npath = \"o\"\n";
        let mixed = model(&format!("{onnx}{onnx}[[lanes]]\ndevice = \"cpu\"\n"));
        let pinned =
            model(&format!("{onnx}[[lanes]]\ndevice = \"cpu\"\nbackend = \"onnx\"\npath = \"o\"\nthreads = 1\n"));
        let b = ThreadBudget::plan(&[mixed.clone(), pinned.clone()], None, true, 4);
        assert_eq!((b.default_lane_threads, b.shared_pool_threads, b.compute_threads), (3, 4, 8));
        assert!(!b.shared_pool_spins, "Candle and pinned lanes compute beside the pool: it must not spin");
        assert!(b.solo_sessions, "its models run alone on pools of their own that spin");
        let off = ThreadBudget::plan(&[mixed.clone(), pinned.clone()], None, false, 4);
        assert!(!off.solo_sessions, "turned off by the configuration");
        let one_core = ThreadBudget::plan(&[mixed.clone(), pinned.clone()], None, true, 1);
        assert!(!one_core.solo_sessions, "one core: nothing to spin for");
        assert_eq!(
            [b.lane_threads(&mixed, &mixed.lanes[0]), b.lane_threads(&mixed, &mixed.lanes[2])],
            [0, 3],
            "0: the shared pool"
        );
        assert_eq!(b.lane_threads(&pinned, &pinned.lanes[1]), 1, "a lane that sets threads keeps a pool of its own");
        // Only ONNX lanes on the pool (and a GPU lane): nothing else computes on the CPU, so it spins.
        let alone = model(&format!("{onnx}{onnx}[[lanes]]\ndevice = \"cuda:0\"\n"));
        let b = ThreadBudget::plan(&[alone.clone(), alone], None, true, 4);
        assert_eq!((b.shared_pool_threads, b.compute_threads, b.shared_pool_spins), (4, 4, true));
        assert!(!b.solo_sessions, "the shared pool spins itself");
    }

    #[test]
    fn weights_become_nice_values_relative_to_the_heaviest_lane() {
        let onnx = "[[lanes]]\ndevice = \"cpu\"\nbackend = \"onnx\"\npath = \"o\"\n";
        let embedding = model(&format!("{onnx}weight = 4\n"));
        let candle = model("[[lanes]]\ndevice = \"cpu\"\n[[lanes]]\ndevice = \"cuda:0\"\nweight = 0.5\n");
        let b = ThreadBudget::plan(&[embedding.clone(), candle.clone()], None, true, 2);
        assert_eq!((b.heaviest_weight, b.shared_pool_nice), (4.0, 0), "the pool holds the heaviest lane");
        assert_eq!(b.lane_cpu(&embedding.lanes[0]), Some(LaneCpu { nice: 0, weight: 4.0 }));
        assert_eq!(
            b.lane_cpu(&candle.lanes[0]),
            Some(LaneCpu { nice: 6, weight: 1.0 }),
            "weight 1 beside 4: nice 6, 1.25^6 = 3.8x less CPU time"
        );
        assert_eq!(b.lane_cpu(&candle.lanes[1]), None, "a GPU lane's thread is never lowered");
        let b = ThreadBudget::plan(&[candle.clone(), model(&format!("{onnx}weight = 0.5\n"))], None, true, 2);
        assert_eq!(
            (b.heaviest_weight, b.shared_pool_nice, b.lane_cpu(&candle.lanes[0]).map(|c| c.nice)),
            (1.0, 3, Some(0))
        );
        let b = ThreadBudget::plan(&[model("")], None, true, 2);
        assert_eq!((b.heaviest_weight, b.shared_pool_nice), (1.0, 0), "no weights: every thread stays as it was");
    }
}
