//! Loading the ONNX Runtime shared library, once per process, with the process's shared compute pool: one
//! intra-op thread pool (ONNX Runtime's global pool) that every session without a pool of its own runs on, so a
//! lone busy model gets every core and several busy ones share them instead of each owning a slice.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::{Environment, GlobalThreadPoolOptions};

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

/// Threads of the shared pool and whether idle ones spin, fixed by [`share_compute_pool`] before the runtime
/// is first used (default: every core, no spinning).
static SHARED_POOL: OnceLock<(usize, bool)> = OnceLock::new();

/// Sizes the shared pool; only the first call before the runtime starts counts (returns whether it did).
/// Spinning threads answer the next batch sooner but burn the cores other lanes could use while idle.
pub fn share_compute_pool(threads: usize, spin: bool) -> bool {
    SHARED_POOL.set((threads.max(1), spin)).is_ok() && ENVIRONMENT.get().is_none()
}

fn shared_pool() -> Result<GlobalThreadPoolOptions, String> {
    let (threads, spin) =
        *SHARED_POOL.get_or_init(|| (std::thread::available_parallelism().map_or(1, |n| n.get()), false));
    GlobalThreadPoolOptions::default()
        .with_intra_threads(threads)
        .and_then(|o| o.with_inter_threads(1))
        .and_then(|o| o.with_spin_control(spin))
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
