//! Loading the ONNX Runtime shared library, once per process, with the process's shared compute pool: one
//! intra-op thread pool (ONNX Runtime's global pool) that every session without a pool of its own runs on, so a
//! lone busy model gets every core and several busy ones share them instead of each owning a slice.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::{Environment, GlobalThreadPoolOptions, ThreadManager};

use crate::error::ModelError;

/// Environment variable naming the library (the `ort` crate's own convention).
pub const RUNTIME_ENV: &str = "ORT_DYLIB_PATH";

/// Where the library is: `$ORT_DYLIB_PATH`, else `assets/onnxruntime/libonnxruntime.so` under the working
/// directory or the repository the binary was built in (where `deploy/fetch-assets.sh` puts it).
pub fn runtime_library() -> PathBuf {
    if let Some(path) = std::env::var_os(RUNTIME_ENV) {
        return PathBuf::from(path);
    }
    let relative = PathBuf::from("assets/onnxruntime/libonnxruntime.so");
    let built_in = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(&relative);
    if !relative.exists() && built_in.exists() { built_in } else { relative }
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// How the shared pool runs, fixed by [`share_compute_pool`] before the runtime is first used (default: every
/// core, no spinning, nice 0, no solo sessions).
#[derive(Debug, Clone, Copy)]
pub struct SharedPool {
    /// Intra-op threads (the caller of a run counts as one).
    pub threads: usize,
    /// Whether idle threads spin: they answer the next parallel section sooner but hold cores other lanes
    /// could use.
    pub spin: bool,
    /// Nice value of the pool's threads (see `cpu_share.rs`).
    pub nice: i32,
    /// Whether each model on a pool that does not spin gets a second session on a pool of its own that spins
    /// during its runs, for steps that compute alone (see `solo.rs`).
    pub solo_sessions: bool,
}

static SHARED_POOL: OnceLock<SharedPool> = OnceLock::new();

/// Sets how the shared pool runs; only the first call before the runtime starts counts (returns whether it
/// did).
pub fn share_compute_pool(pool: SharedPool) -> bool {
    let pool = SharedPool { threads: pool.threads.max(1), ..pool };
    SHARED_POOL.set(pool).is_ok() && ENVIRONMENT.get().is_none()
}

/// Starts ONNX Runtime's pool threads, named and at the pool's nice value.
pub(crate) struct ComputeThreads {
    pub name: &'static str,
    pub nice: i32,
}

impl ThreadManager for ComputeThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        let nice = self.nice;
        std::thread::Builder::new()
            .name(self.name.to_string())
            .spawn(move || {
                crate::cpu_share::lower_current_thread(nice);
                work()
            })
            .map_err(|e| ort::Error::new(format!("starting a compute thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread.join().map_err(|_| ort::Error::new("a compute thread panicked"))
    }
}

/// The shared pool's settings (the defaults once the runtime started without [`share_compute_pool`]).
fn shared_pool_settings() -> SharedPool {
    *SHARED_POOL.get_or_init(|| SharedPool {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        spin: false,
        nice: 0,
        solo_sessions: false,
    })
}

/// The threads of the pool a session on the shared pool runs on while it computes alone (see `solo.rs`), or
/// `None` when it has none: turned off, the shared pool spins already, or it has a single thread (nothing to
/// spin for).
pub(crate) fn solo_pool_threads() -> Option<usize> {
    let pool = shared_pool_settings();
    (pool.solo_sessions && !pool.spin && pool.threads > 1).then_some(pool.threads)
}

fn shared_pool() -> Result<GlobalThreadPoolOptions, String> {
    let pool = shared_pool_settings();
    GlobalThreadPoolOptions::default()
        .with_intra_threads(pool.threads)
        .and_then(|o| o.with_inter_threads(1))
        .and_then(|o| o.with_spin_control(pool.spin))
        .and_then(|o| o.with_thread_manager(ComputeThreads { name: "onnx-shared-pool", nice: pool.nice }))
        .map_err(|e| format!("configuring the shared thread pool: {e}"))
}

/// The process's ONNX Runtime environment, loading the library on first use.
pub(crate) fn environment() -> Result<&'static Environment, ModelError> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = runtime_library();
        if !path.exists() {
            return Err(format!(
                "ONNX Runtime library not found at {} (set {RUNTIME_ENV}, or run deploy/fetch-assets.sh, which `make run` does)",
                path.display()
            ));
        }
        let builder = ort::init_from(&path).map_err(|e| format!("loading ONNX Runtime from {}: {e}", path.display()))?;
        builder
            .with_name("ferroserve")
            .with_global_thread_pool(shared_pool()?)
            .build()
            .map_err(|e| format!("starting ONNX Runtime: {e}"))
    });
    env.as_ref().map_err(|e| ModelError::Backend(e.clone()))
}
