//! Loading the ONNX Runtime shared library, once per process.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;

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
        builder.with_name("ferroserve").build().map_err(|e| format!("starting ONNX Runtime: {e}"))
    });
    env.as_ref().map_err(|e| ModelError::Backend(e.clone()))
}
