//! Tensor models through the engine: named tensors in, named tensors out (KServe v2 `/infer` on any ONNX
//! graph). A request runs on the blocking pool holding the model's session; requests to one model run one at
//! a time, in arrival order.

use std::time::Instant;

use ferroserve_models::ModelError;
use ferroserve_models::onnx::{NamedTensor, TensorSpec};

use super::{Engine, EngineError};

impl Engine {
    /// The declared inputs and outputs of a tensor model.
    pub fn tensor_specs(&self, model: &str) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), EngineError> {
        let served = self.ready_model(model)?;
        let t = served.tensor()?;
        Ok((t.inputs.clone(), t.outputs.clone()))
    }

    /// Runs a tensor model; returns the outputs named in `wanted` (all when empty), in the model's order.
    pub async fn infer(
        &self,
        model: &str,
        inputs: Vec<NamedTensor>,
        wanted: &[String],
    ) -> Result<Vec<NamedTensor>, EngineError> {
        let served = self.ready_model(model)?;
        let t = served.tensor()?.clone();
        if let Some(unknown) = wanted.iter().find(|w| !t.outputs.iter().any(|o| &o.name == *w)) {
            let known: Vec<&str> = t.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(EngineError::InvalidInput(format!(
                "model {model:?} has no output {unknown:?}; it has {known:?}"
            )));
        }
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let mut session = t.session.lock().unwrap_or_else(|p| p.into_inner());
            session.run(inputs)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("inference task failed: {e}")))?;
        let outcome: Result<Vec<NamedTensor>, EngineError> = result.map_err(|e| match e {
            ModelError::Unsupported(m) => EngineError::InvalidInput(format!("model {model:?}: {m}")),
            other => EngineError::Internal(format!("model {model:?}: {other}")),
        });
        served.record_outcome(&outcome);
        metrics::histogram!("ferroserve_tensor_infer_seconds", "model" => model.to_string())
            .record(started.elapsed().as_secs_f64());
        let mut outputs = outcome?;
        if !wanted.is_empty() {
            outputs.retain(|o| wanted.contains(&o.name));
        }
        Ok(outputs)
    }
}
