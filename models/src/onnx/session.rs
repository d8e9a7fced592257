//! One ONNX Runtime session and the generic path: named tensors in, named tensors out, checked against
//! the model's declared inputs so that a wrong name, type or rank is a clear error, not a runtime abort.

use std::path::Path;

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use prost::Message;

use super::proto::ModelProto;
use super::runtime::{ComputeThreads, environment, solo_pool_threads};
use super::solo::Solo;
use super::tensor::{ElementType, NamedTensor};
use crate::error::ModelError;
use crate::quantize::{cpu_prefers_signed_weights, fit_integer_weights};

/// A declared input or output: name, element type (None: not supported here) and shape (-1: dynamic).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub element_type: Option<ElementType>,
    pub shape: Vec<i64>,
}

/// A loaded ONNX model. `run` takes `&mut self`: a lane owns its session.
///
/// A model on the process's shared pool also gets a second session of the same model on a pool of its own
/// whose threads spin during its runs, for the steps that compute alone (`solo.rs`).
pub struct OnnxModel {
    session: Session,
    solo: Option<Solo>,
    runs_alone: u64,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn specs(outlets: &[ort::value::Outlet]) -> Vec<TensorSpec> {
    outlets
        .iter()
        .map(|o| TensorSpec {
            name: o.name().to_string(),
            element_type: ElementType::of(o.dtype()),
            shape: o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default(),
        })
        .collect()
}

/// The intra-op pool a session runs on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pool {
    /// The process's shared pool (`runtime.rs`).
    Shared,
    /// A pool of the session's own: `threads` threads at `nice`.
    Own { threads: usize, nice: i32 },
    /// A pool of the session's own whose threads spin while a run is in flight and stop when it returns.
    Spinning { threads: usize, nice: i32 },
}

/// Makes a session of the model at `path` with all graph optimizations on `pool`; INT8 weights are first put
/// in the form this CPU multiplies fastest without losing accuracy (`quantize::fit_integer_weights`).
pub(super) fn session(path: &Path, pool: Pool) -> Result<Session, ModelError> {
    if !path.exists() {
        return Err(ModelError::Io { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() });
    }
    let fitted = fitted(path)?;
    let environment = environment()?;
    let own = |b: SessionBuilder, threads: usize, name: &'static str, nice: i32| -> ort::Result<SessionBuilder> {
        Ok(b.with_independent_thread_pool()?
            .with_intra_threads(threads)?
            .with_inter_threads(1)?
            .with_thread_manager(ComputeThreads { name, nice })?)
    };
    let make = || -> ort::Result<Session> {
        let builder = Session::builder(environment)?.with_optimization_level(GraphOptimizationLevel::All)?;
        let mut builder = match pool {
            Pool::Shared => builder,
            Pool::Own { threads, nice } => own(builder, threads, "onnx-lane-pool", nice)?,
            Pool::Spinning { threads, nice } => {
                let b = builder.with_intra_op_spinning(true)?.with_config_entry("session.force_spinning_stop", "1")?;
                own(b, threads, "onnx-solo-pool", nice)?
            }
        };
        match &fitted {
            Some(bytes) => builder.commit_from_memory(bytes),
            None => builder.commit_from_file(path),
        }
    };
    make().map_err(|e| ModelError::Backend(format!("{}: {e}", path.display())))
}

impl OnnxModel {
    /// Loads `path` on the process's shared pool (`threads` 0, see `runtime.rs`) or on a pool of its own of
    /// `threads` intra-op threads at `nice` (see `cpu_share.rs`), with all graph optimizations and INT8
    /// weights fitted to this CPU.
    pub fn load(path: &Path, threads: usize, nice: i32) -> Result<Self, ModelError> {
        let (session, solo) = match threads {
            0 => (session(path, Pool::Shared)?, solo_pool_threads().map(|cores| Solo::new(path, cores, nice))),
            _ => (session(path, Pool::Own { threads, nice })?, None),
        };
        let (inputs, outputs) = (specs(session.inputs()), specs(session.outputs()));
        Ok(OnnxModel { session, solo, runs_alone: 0, inputs, outputs })
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// How many runs took the solo session (computed alone on its spinning pool).
    pub fn runs_alone(&self) -> u64 {
        self.runs_alone
    }

    /// Runs the model on `inputs` (every declared input, by name) and returns every output, in the
    /// model's declared order.
    pub fn run(&mut self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, ModelError> {
        check_inputs(&self.inputs, &inputs)?;
        let values = inputs
            .into_iter()
            .map(|t| Ok((t.name.clone(), t.into_value()?)))
            .collect::<Result<Vec<_>, ModelError>>()?;
        let session = match self.solo.as_mut().and_then(Solo::for_this_step) {
            Some(solo) => {
                self.runs_alone += 1;
                solo
            }
            None => &mut self.session,
        };
        let outputs = session.run(values).map_err(|e| ModelError::Backend(e.to_string()))?;
        let mut result = Vec::with_capacity(outputs.len());
        for (name, value) in outputs.iter() {
            result.push(NamedTensor::from_value(name, &value)?);
        }
        Ok(result)
    }
}

/// The model's bytes with its INT8 MatMul weights fitted to this CPU, or `None` when nothing changes (the file
/// is then loaded as it is; a file that is no ONNX model is left for ONNX Runtime to refuse).
fn fitted(path: &Path) -> Result<Option<Vec<u8>>, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    if !bytes.windows(b"MatMulInteger".len()).any(|w| w == b"MatMulInteger") {
        return Ok(None);
    }
    let Ok(mut model) = ModelProto::decode(bytes.as_slice()) else { return Ok(None) };
    let signed = cpu_prefers_signed_weights();
    let changed = fit_integer_weights(&mut model, signed);
    if changed == 0 {
        return Ok(None);
    }
    let form = if signed { "int8 (this CPU has VNNI)" } else { "uint8 around 128 (this CPU has no VNNI)" };
    tracing::info!(path = %path.display(), weights = changed, form, "INT8 weights fitted to the CPU");
    Ok(Some(model.encode_to_vec()))
}

/// Checks `inputs` against a model's declared inputs: every one given once, by name, with its element type,
/// rank and fixed dimensions, and data that fills the shape.
pub fn check_inputs(specs: &[TensorSpec], inputs: &[NamedTensor]) -> Result<(), ModelError> {
    for spec in specs {
        if !inputs.iter().any(|t| t.name == spec.name) {
            return Err(ModelError::Unsupported(format!("input {:?} is missing", spec.name)));
        }
    }
    for (i, tensor) in inputs.iter().enumerate() {
        tensor.check()?;
        if inputs[..i].iter().any(|t| t.name == tensor.name) {
            return Err(ModelError::Unsupported(format!("input {:?} is given twice", tensor.name)));
        }
        let Some(spec) = specs.iter().find(|s| s.name == tensor.name) else {
            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(ModelError::Unsupported(format!("unknown input {:?}; the model takes {known:?}", tensor.name)));
        };
        let given = tensor.data.element_type();
        if spec.element_type != Some(given) {
            return Err(ModelError::Unsupported(format!(
                "input {:?} must be {:?}, got {given:?}",
                spec.name, spec.element_type
            )));
        }
        let fits = spec.shape.len() == tensor.shape.len()
            && spec.shape.iter().zip(&tensor.shape).all(|(&want, &got)| want < 0 || want == got);
        if !fits {
            return Err(ModelError::Unsupported(format!(
                "input {:?} must have shape {:?} (-1: any), got {:?}",
                spec.name, spec.shape, tensor.shape
            )));
        }
    }
    Ok(())
}
