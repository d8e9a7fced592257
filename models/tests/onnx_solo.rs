//! Solo sessions: a model on the process's shared pool (which does not spin) runs a step on its second
//! session, whose own pool spins, when no other CPU lane is busy (once the first such step has had it made),
//! and on the shared pool beside one; both give the same outputs. Its own test binary: the shared pool is set once per process, before the runtime starts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferroserve_models::cpu_share::{CpuShare, LaneCpu};
use ferroserve_models::onnx::{NamedTensor, OnnxModel, SharedPool, TensorData, share_compute_pool};

fn squeezenet() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/onnx-light/light_squeezenet.onnx");
    assert!(path.exists(), "{} is missing: run deploy/fetch-assets.sh (make test does)", path.display());
    path
}

/// Threads of this process named as the solo sessions' pools name theirs.
fn solo_pool_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap().filter_map(Result::ok);
    let comm = |t: &std::fs::DirEntry| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
    tasks.filter(|t| comm(t).trim() == "onnx-solo-pool").count()
}

#[test]
fn a_step_alone_runs_on_the_spinning_solo_session_and_gives_the_same_outputs() {
    let pool = SharedPool { threads: 2, spin: false, nice: 0, solo_sessions: true };
    assert!(share_compute_pool(pool), "the first setting before the runtime starts counts");

    let mut model = OnnxModel::load(&squeezenet(), 0, 0).unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(solo_pool_threads(), 0, "the solo session is made only once a step computes alone");
    }
    let spec = model.inputs()[0].clone();
    let n = 3 * 224 * 224;
    let input = NamedTensor {
        name: spec.name.clone(),
        shape: vec![1, 3, 224, 224],
        data: TensorData::F32((0..n).map(|i| (i % 251) as f32 / 251.0).collect()),
    };

    let mut lane = CpuShare::new(Some(LaneCpu { nice: 0, weight: 1.0 }));
    let mut other = CpuShare::new(Some(LaneCpu { nice: 0, weight: 1.0 }));
    let first = lane.compute(|| model.run(vec![input.clone()])).unwrap();
    assert_eq!(
        model.runs_alone(),
        0,
        "the first step alone starts making the solo session and runs on the shared pool"
    );
    // Until it is ready, steps alone stay on the shared pool.
    let started = Instant::now();
    let alone = loop {
        let out = lane.compute(|| model.run(vec![input.clone()])).unwrap();
        if model.runs_alone() > 0 {
            break out;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the solo session was not ready in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(model.runs_alone(), 1);
    assert_eq!(first, alone, "both sessions run the same graph with as many threads");
    if cfg!(target_os = "linux") {
        assert!(solo_pool_threads() >= 1, "the solo session's pool has its own (named) thread");
    }

    let beside = other.compute(|| lane.compute(|| model.run(vec![input.clone()]))).unwrap();
    assert_eq!(model.runs_alone(), 1, "another lane computes: the shared pool");
    assert_eq!(alone, beside);

    // A model with a pool of its own (a lane that sets `threads`) has no solo session.
    let mut pinned = OnnxModel::load(&squeezenet(), 2, 0).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(lane.compute(|| pinned.run(vec![input.clone()])).unwrap(), alone);
    assert_eq!(pinned.runs_alone(), 0);
}
