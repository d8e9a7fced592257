//! Inference on named tensors for every model (the Open Inference Protocol's view, which KServe v2 REST and
//! gRPC carry): tensor models (ONNX graphs) by their graph's tensors; embedding models with a BYTES `text`
//! input and an FP32 `embedding` output; generation models with a BYTES `text_input` and a BYTES
//! `text_output`. A tensor model's request runs on the blocking pool holding the model's session; requests to
//! one model run one at a time, in arrival order.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferroserve_models::Task;
use ferroserve_models::llm::SamplingParams;
use ferroserve_models::onnx::{ElementType, NamedTensor, TensorData, TensorSpec};

use super::{EmbedRequest, Engine, EngineError, GenerateRequest};
use crate::cache::CacheMode;
use crate::generation::Prompt;

/// A request's or response's tensor: typed numbers, or BYTES elements.
#[derive(Debug, Clone, PartialEq)]
pub struct InferTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: InferData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InferData {
    Typed(TensorData),
    Bytes(Vec<Vec<u8>>),
}

impl InferTensor {
    /// Checks that the shape is valid and holds exactly the data's values.
    pub fn check(&self) -> Result<(), EngineError> {
        let at = format!("input {:?}", self.name);
        let count = element_count(&self.shape)
            .ok_or_else(|| EngineError::InvalidInput(format!("{at}: shape {:?} is not valid", self.shape)))?;
        if self.data.len() != count {
            return Err(EngineError::InvalidInput(format!(
                "{at}: shape {:?} holds {count} values, the data has {}",
                self.shape,
                self.data.len()
            )));
        }
        Ok(())
    }
}

/// The element count a shape holds; `None` for a negative or overflowing shape.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)))
}

impl InferData {
    pub fn len(&self) -> usize {
        match self {
            InferData::Typed(t) => t.len(),
            InferData::Bytes(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The protocol's datatype name (`FP32`, `BYTES`, ...).
    pub fn datatype(&self) -> &'static str {
        match self {
            InferData::Typed(t) => datatype(Some(t.element_type())),
            InferData::Bytes(_) => "BYTES",
        }
    }
}

/// The protocol's name of an element type.
pub fn datatype(t: Option<ElementType>) -> &'static str {
    match t {
        Some(ElementType::F16) => "FP16",
        Some(ElementType::F32) => "FP32",
        Some(ElementType::F64) => "FP64",
        Some(ElementType::I8) => "INT8",
        Some(ElementType::I16) => "INT16",
        Some(ElementType::I32) => "INT32",
        Some(ElementType::I64) => "INT64",
        Some(ElementType::U8) => "UINT8",
        Some(ElementType::U16) => "UINT16",
        Some(ElementType::U32) => "UINT32",
        Some(ElementType::U64) => "UINT64",
        Some(ElementType::Bool) => "BOOL",
        None => "UNSUPPORTED",
    }
}

/// The element type a protocol datatype names (`None` for BYTES and unknown names).
pub fn element_type(datatype: &str) -> Option<ElementType> {
    [
        ElementType::F16,
        ElementType::F32,
        ElementType::F64,
        ElementType::I8,
        ElementType::I16,
        ElementType::I32,
        ElementType::I64,
        ElementType::U8,
        ElementType::U16,
        ElementType::U32,
        ElementType::U64,
        ElementType::Bool,
    ]
    .into_iter()
    .find(|t| self::datatype(Some(*t)) == datatype)
}

/// Per-model inference statistics, as Triton reports them (durations in nanoseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InferStats {
    /// Milliseconds since the epoch of the last request.
    pub last_inference_ms: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub success: (u64, u64),
    pub fail: (u64, u64),
    /// Waiting for the model (tensor models: for its session).
    pub queue: (u64, u64),
    /// Running the model.
    pub compute: (u64, u64),
}

/// Statistics of every model served through named-tensor inference, kept across reloads.
#[derive(Default)]
pub struct Statistics(Mutex<BTreeMap<String, InferStats>>);

impl Statistics {
    fn record(&self, model: &str, ok: bool, total: Duration, queue: Duration, items: u64) {
        let ns = |d: Duration| d.as_nanos() as u64;
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.entry(model.to_string()).or_default();
        s.last_inference_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let add = |pair: &mut (u64, u64), d: Duration| {
            pair.0 += 1;
            pair.1 += ns(d);
        };
        if ok {
            s.inference_count += items;
            s.execution_count += 1;
            add(&mut s.success, total);
            add(&mut s.queue, queue);
            add(&mut s.compute, total.saturating_sub(queue));
        } else {
            add(&mut s.fail, total);
        }
    }

    /// One model's, or every model's (by name).
    pub fn get(&self, model: Option<&str>) -> Vec<(String, InferStats)> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter(|(name, _)| model.is_none_or(|m| m == *name)).map(|(n, s)| (n.clone(), *s)).collect()
    }
}

/// Request-level settings for generation models.
#[derive(Debug, Clone, Copy, Default)]
pub struct InferParams {
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    /// The model's priority level (0 first); `None`: its default.
    pub priority: Option<u8>,
    /// How long the request may wait; `None`: the model's default deadline.
    pub timeout: Option<Duration>,
}

impl InferParams {
    /// Triton's request parameters: `priority` (0: the model's default; 1 the first level, 2 the next, ...)
    /// and `timeout` (microseconds).
    pub fn triton_scheduling(mut self, priority: Option<u64>, timeout_us: Option<u64>) -> Result<Self, EngineError> {
        self.priority = match priority {
            None | Some(0) => None,
            Some(p) => Some(u8::try_from(p - 1).map_err(|_| {
                EngineError::InvalidInput(format!("priority {p} is out of range (0: default, 1: first, ...)"))
            })?),
        };
        self.timeout = timeout_us.filter(|t| *t > 0).map(Duration::from_micros);
        Ok(self)
    }
}

/// A model's tensors as the protocol describes them: name, datatype, shape (-1: any).
#[derive(Debug, Clone)]
pub struct Signature {
    pub platform: &'static str,
    /// Rows a batch may stack along the leading dimension (Triton's `max_batch_size`; 0: no batching).
    pub max_batch_size: usize,
    pub inputs: Vec<(String, &'static str, Vec<i64>)>,
    pub outputs: Vec<(String, &'static str, Vec<i64>)>,
}

fn described(specs: &[TensorSpec]) -> Vec<(String, &'static str, Vec<i64>)> {
    specs.iter().map(|s| (s.name.clone(), datatype(s.element_type), s.shape.clone())).collect()
}

impl Engine {
    /// What a model of this server does (loaded or not).
    pub fn task_of(&self, model: &str) -> Result<Task, EngineError> {
        let key = self.model_key(model).ok_or_else(|| EngineError::ModelNotFound(model.to_string()))?;
        self.read().get(&key).map(|(entry, _)| entry.model.task).ok_or(EngineError::ModelNotFound(key))
    }

    /// What a model takes and gives.
    pub fn signature(&self, model: &str) -> Result<Signature, EngineError> {
        let bytes = |name: &str, shape: Vec<i64>| vec![(name.to_string(), "BYTES", shape)];
        Ok(match self.task_of(model)? {
            Task::Tensor => {
                let served = self.ready_model(model)?;
                let t = served.tensor()?;
                Signature {
                    platform: "onnxruntime_onnx",
                    max_batch_size: if t.batches { served.entry.batching.max_batch_size } else { 0 },
                    inputs: described(&t.inputs),
                    outputs: described(&t.outputs),
                }
            }
            Task::Embedding => {
                let dims = self.ready_model(model)?.embedding()?.0.dimensions as i64;
                Signature {
                    platform: "ferroserve_embedding",
                    max_batch_size: 0,
                    inputs: bytes("text", vec![-1]),
                    outputs: vec![("embedding".into(), "FP32", vec![-1, dims])],
                }
            }
            Task::Generation => Signature {
                platform: "ferroserve_generation",
                max_batch_size: 0,
                inputs: bytes("text_input", vec![1]),
                outputs: bytes("text_output", vec![1]),
            },
        })
    }

    /// Inference statistics of one model or all.
    pub fn inference_statistics(&self, model: Option<&str>) -> Result<Vec<(String, InferStats)>, EngineError> {
        if let Some(m) = model
            && !self.has_model(m)
        {
            return Err(EngineError::ModelNotFound(m.to_string()));
        }
        let mut stats = self.statistics.get(model);
        // Models not asked yet are listed with zeros.
        for m in self.list_models() {
            if model.is_none_or(|x| x == m.name) && !stats.iter().any(|(n, _)| *n == m.name) {
                stats.push((m.name, InferStats::default()));
            }
        }
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(stats)
    }

    /// Runs any model on named tensors; returns the outputs named in `wanted` (all when empty).
    pub async fn infer(
        &self,
        model: &str,
        inputs: Vec<InferTensor>,
        wanted: &[String],
        params: InferParams,
    ) -> Result<Vec<InferTensor>, EngineError> {
        inputs.iter().try_for_each(InferTensor::check)?;
        let started = Instant::now();
        let items = inputs.first().and_then(|t| t.shape.first()).map_or(1, |&n| n.max(1) as u64);
        let mut queued = Duration::ZERO;
        let result = self.infer_inner(model, inputs, wanted, params, &mut queued).await;
        if self.has_model(model) {
            self.statistics.record(model, result.is_ok(), started.elapsed(), queued, items);
        }
        result
    }

    async fn infer_inner(
        &self,
        model: &str,
        inputs: Vec<InferTensor>,
        wanted: &[String],
        params: InferParams,
        queued: &mut Duration,
    ) -> Result<Vec<InferTensor>, EngineError> {
        let outputs = match self.task_of(model)? {
            Task::Tensor => {
                let typed = inputs
                    .into_iter()
                    .map(|t| match t.data {
                        InferData::Typed(data) => Ok(NamedTensor { name: t.name, shape: t.shape, data }),
                        InferData::Bytes(_) => {
                            Err(EngineError::InvalidInput(format!("input {:?}: this model takes no BYTES", t.name)))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.run_tensor_model(model, typed, wanted, params, queued)
                    .await?
                    .into_iter()
                    .map(|t| InferTensor { name: t.name, shape: t.shape, data: InferData::Typed(t.data) })
                    .collect()
            }
            Task::Embedding => {
                let texts = texts(inputs, "text")?;
                let n = texts.len() as i64;
                let out = self.embed(EmbedRequest::with_defaults(model.to_string(), texts)).await?;
                let dims = out.vectors.first().map_or(0, Vec::len) as i64;
                let data = InferData::Typed(TensorData::F32(out.vectors.into_iter().flatten().collect()));
                vec![InferTensor { name: "embedding".into(), shape: vec![n, dims], data }]
            }
            Task::Generation => {
                let mut prompts = texts(inputs, "text_input")?;
                if prompts.len() != 1 {
                    return Err(EngineError::InvalidInput("input \"text_input\" takes one prompt".into()));
                }
                let text = self.generate_text(model, prompts.remove(0), params).await?;
                vec![InferTensor {
                    name: "text_output".into(),
                    shape: vec![1],
                    data: InferData::Bytes(vec![text.into_bytes()]),
                }]
            }
        };
        if let Some(unknown) = wanted.iter().find(|w| !outputs.iter().any(|o| &o.name == *w)) {
            return Err(EngineError::InvalidInput(format!("model {model:?} has no output {unknown:?}")));
        }
        Ok(outputs.into_iter().filter(|o| wanted.is_empty() || wanted.contains(&o.name)).collect())
    }

    /// A generation model's answer to its BYTES `text_input`, as the scheduler's events (streaming).
    pub async fn infer_stream(
        &self,
        model: &str,
        inputs: Vec<InferTensor>,
        params: InferParams,
    ) -> Result<super::GenerationStream, EngineError> {
        if self.task_of(model)? != Task::Generation {
            return Err(EngineError::InvalidInput(format!("model {model:?} does not generate text: use ModelInfer")));
        }
        let mut prompts = texts(inputs, "text_input")?;
        if prompts.len() != 1 {
            return Err(EngineError::InvalidInput("input \"text_input\" takes one prompt".into()));
        }
        self.generate(generate_request(model, prompts.remove(0), params)).await
    }

    /// The whole text of a generation (not streamed).
    async fn generate_text(&self, model: &str, prompt: String, params: InferParams) -> Result<String, EngineError> {
        let stream = self.generate(generate_request(model, prompt, params)).await?;
        Ok(stream.collect(|_| Ok(())).await?.text)
    }
}

fn generate_request(model: &str, prompt: String, params: InferParams) -> GenerateRequest {
    GenerateRequest {
        model: model.to_string(),
        prompt: Prompt::Text(prompt),
        params: SamplingParams { temperature: params.temperature.unwrap_or(0.0), ..Default::default() },
        max_tokens: params.max_tokens,
        stop: Vec::new(),
        ignore_eos: false,
        priority: params.priority,
        timeout: params.timeout,
        cache: CacheMode::Default,
    }
}

impl Engine {
    async fn run_tensor_model(
        &self,
        model: &str,
        inputs: Vec<NamedTensor>,
        wanted: &[String],
        params: InferParams,
        queued: &mut Duration,
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
        let (priority, deadline) = served.schedule(params.priority, params.timeout)?;
        let result = t.run(inputs, priority, deadline).await;
        let outcome = result.map(|(outputs, waited)| {
            *queued = waited;
            outputs
        });
        let outcome: Result<Vec<NamedTensor>, EngineError> = outcome.map_err(|e| match e {
            crate::batching::BatchError::InvalidInput(m) => EngineError::InvalidInput(format!("model {model:?}: {m}")),
            other => other.into(),
        });
        served.record_outcome(&outcome);
        metrics::histogram!("ferroserve_tensor_infer_seconds", "model" => model.to_string())
            .record(started.elapsed().as_secs_f64());
        outcome
    }
}

/// The texts of the one BYTES input a text model takes.
fn texts(inputs: Vec<InferTensor>, expected: &str) -> Result<Vec<String>, EngineError> {
    let mut inputs = inputs.into_iter();
    match (inputs.next(), inputs.next()) {
        (Some(InferTensor { name, data: InferData::Bytes(items), .. }), None) if name == expected => items
            .into_iter()
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|_| EngineError::InvalidInput(format!("input {expected:?}: an element is not UTF-8")))
            })
            .collect(),
        _ => Err(EngineError::InvalidInput(format!("this model takes one BYTES input named {expected:?}"))),
    }
}

impl Signature {
    /// Triton's model configuration: with batching, dimensions leave out the leading batch dimension.
    pub fn triton_dims(&self, shape: &[i64]) -> Vec<i64> {
        if self.max_batch_size > 0 { shape.get(1..).unwrap_or_default().to_vec() } else { shape.to_vec() }
    }
}

/// Triton's name of a datatype in model configurations (`TYPE_FP32`, `TYPE_STRING` for BYTES).
pub fn triton_type(datatype: &str) -> String {
    match datatype {
        "BYTES" => "TYPE_STRING".to_string(),
        other => format!("TYPE_{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_must_hold_the_data() {
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[-1, 3]), None);
        let t = |shape: Vec<i64>, n: usize| InferTensor {
            name: "x".into(),
            shape,
            data: InferData::Typed(TensorData::F32(vec![0.0; n])),
        };
        assert!(t(vec![2, 3], 6).check().is_ok());
        let e = t(vec![2, 3], 5).check().unwrap_err().to_string();
        assert!(e.contains("input \"x\": shape [2, 3] holds 6 values, the data has 5"), "{e}");
        assert!(t(vec![-1, 3], 3).check().unwrap_err().to_string().contains("is not valid"));
    }
}
