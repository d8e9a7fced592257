//! KServe v2 / Open Inference Protocol over gRPC: Triton's `inference.GRPCInferenceService` (KServe's
//! `grpc_predict_v2` methods plus the extensions `tritonclient[grpc]` calls), a thin adapter over the engine's
//! named-tensor inference: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer
//! (typed `contents` or `raw_input_contents` in; `raw_output_contents` out, as Triton answers),
//! ModelStreamInfer (a generation model streams one response per piece of text), RepositoryIndex,
//! RepositoryModelLoad, RepositoryModelUnload, ModelStatistics and ModelConfig. The other methods (shared memory, tracing, log settings) answer UNIMPLEMENTED.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use ferroserve_models::onnx::TensorData;
use ferroserve_proto::inference::{
    self as pb, grpc_inference_service_server::GrpcInferenceService, infer_parameter::ParameterChoice,
    model_infer_request::InferInputTensor, model_infer_response::InferOutputTensor,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::allow_model;
use super::status::to_status;
use crate::api::auth::Principal;
use crate::api::tensor_wire;
use crate::engine::{Engine, EngineError, InferData, InferParams, InferTensor};
use crate::generation::GenerationEvent;

#[derive(Clone)]
pub struct KserveService {
    engine: Arc<Engine>,
}

impl KserveService {
    pub fn new(engine: Arc<Engine>) -> Self {
        KserveService { engine }
    }

    /// The entry a request addresses: `name` (its newest version), or `name@version`.
    fn key(&self, name: &str, version: &str) -> Result<String, Status> {
        self.engine.versioned(name, version).map_err(to_status)
    }
}

fn invalid(message: String) -> Status {
    Status::invalid_argument(message)
}

/// Typed `contents` of one input (FP16 has no typed field: it comes raw).
fn from_contents(c: pb::InferTensorContents, datatype: &str, at: &str) -> Result<InferData, Status> {
    fn narrow<A: Copy + std::fmt::Display, B: TryFrom<A>>(
        values: Vec<A>,
        at: &str,
        datatype: &str,
    ) -> Result<Vec<B>, Status> {
        values
            .into_iter()
            .map(|x| B::try_from(x).map_err(|_| invalid(format!("{at}: {x} is not {datatype}"))))
            .collect()
    }
    Ok(InferData::Typed(match datatype {
        "FP32" => TensorData::F32(c.fp32_contents),
        "FP64" => TensorData::F64(c.fp64_contents),
        "INT8" => TensorData::I8(narrow(c.int_contents, at, datatype)?),
        "INT16" => TensorData::I16(narrow(c.int_contents, at, datatype)?),
        "INT32" => TensorData::I32(c.int_contents),
        "INT64" => TensorData::I64(c.int64_contents),
        "UINT8" => TensorData::U8(narrow(c.uint_contents, at, datatype)?),
        "UINT16" => TensorData::U16(narrow(c.uint_contents, at, datatype)?),
        "UINT32" => TensorData::U32(c.uint_contents),
        "UINT64" => TensorData::U64(c.uint64_contents),
        "BOOL" => TensorData::Bool(c.bool_contents),
        "BYTES" => return Ok(InferData::Bytes(c.bytes_contents)),
        other => return Err(invalid(format!("{at}: datatype {other} needs raw_input_contents or is not supported"))),
    }))
}

fn inputs(request: &mut pb::ModelInferRequest) -> Result<Vec<InferTensor>, Status> {
    let raw = std::mem::take(&mut request.raw_input_contents);
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    std::mem::take(&mut request.inputs)
        .into_iter()
        .map(|InferInputTensor { name, datatype, shape, contents, .. }| {
            let at = format!("input {name:?}");
            let data = match (raw.next(), contents) {
                (Some(bytes), _) => {
                    tensor_wire::decode(&bytes, &datatype).map_err(|e| invalid(format!("{at}: {e}")))?
                }
                (None, Some(c)) => from_contents(c, &datatype, &at)?,
                (None, None) => return Err(invalid(format!("{at} has no contents"))),
            };
            Ok(InferTensor { name, shape, data })
        })
        .collect()
}

fn params(parameters: &HashMap<String, pb::InferParameter>) -> Result<InferParams, Status> {
    let number = |k: &str| match parameters.get(k).and_then(|p| p.parameter_choice.as_ref()) {
        Some(ParameterChoice::Int64Param(n)) => Some(*n as f64),
        Some(ParameterChoice::Uint64Param(n)) => Some(*n as f64),
        Some(ParameterChoice::DoubleParam(x)) => Some(*x),
        Some(ParameterChoice::StringParam(s)) => s.parse().ok(),
        _ => None,
    };
    let whole = |k: &str| number(k).filter(|n| *n >= 0.0).map(|n| n as u64);
    InferParams {
        max_tokens: whole("max_tokens").map(|n| n as usize),
        temperature: number("temperature").map(|t| t as f32),
        ..Default::default()
    }
    .triton_scheduling(whole("priority"), whole("timeout"))
    .map_err(to_status)
}

fn response(model: &str, id: String, outputs: Vec<InferTensor>) -> pb::ModelInferResponse {
    let raw_output_contents = outputs.iter().map(|t| tensor_wire::encode(&t.data)).collect();
    let outputs = outputs
        .into_iter()
        .map(|t| InferOutputTensor {
            datatype: t.data.datatype().to_string(),
            name: t.name,
            shape: t.shape,
            ..Default::default()
        })
        .collect();
    pb::ModelInferResponse {
        model_name: model.to_string(),
        model_version: "1".into(),
        id,
        outputs,
        raw_output_contents,
        ..Default::default()
    }
}

type StreamOut = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

impl KserveService {
    async fn infer_one(
        &self,
        principal: Option<&Principal>,
        mut request: pb::ModelInferRequest,
    ) -> Result<pb::ModelInferResponse, Status> {
        allow_model(principal, &request.model_name)?;
        request.model_name = self.key(&request.model_name, &request.model_version)?;
        let inputs = inputs(&mut request)?;
        let wanted: Vec<String> = request.outputs.iter().map(|o| o.name.clone()).collect();
        let params = params(&request.parameters)?;
        let outputs = self.engine.infer(&request.model_name, inputs, &wanted, params).await.map_err(to_status)?;
        Ok(response(&request.model_name, request.id, outputs))
    }

    /// The responses to one streamed request: one per piece of text for a generation model, else one.
    async fn stream_one(&self, principal: Option<&Principal>, mut request: pb::ModelInferRequest) -> StreamOut {
        let error =
            |e: Status| pb::ModelStreamInferResponse { error_message: e.message().to_string(), infer_response: None };
        if let Err(e) = allow_model(principal, &request.model_name) {
            return Box::pin(futures::stream::once(async move { Ok(error(e)) }));
        }
        let is_generation = self.engine.task_of(&request.model_name).ok() == Some(ferroserve_models::Task::Generation);
        if !is_generation {
            let answer = match self.infer_one(principal, request).await {
                Ok(r) => pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(r) },
                Err(e) => error(e),
            };
            return Box::pin(futures::stream::once(async { Ok(answer) }));
        }
        let (model, id) = (request.model_name.clone(), request.id.clone());
        let started = match (inputs(&mut request), params(&request.parameters)) {
            (Ok(inputs), Ok(params)) => self.engine.infer_stream(&model, inputs, params).await.map_err(to_status),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let generation = match started {
            Ok(g) => g,
            Err(e) => return Box::pin(futures::stream::once(async move { Ok(error(e)) })),
        };
        let pieces = tokio_stream::wrappers::UnboundedReceiverStream::new(generation.events).filter_map(move |event| {
            let (model, id) = (model.clone(), id.clone());
            async move {
                let text = match event {
                    GenerationEvent::Token { text, .. } | GenerationEvent::Done { text, .. } if !text.is_empty() => {
                        text
                    }
                    GenerationEvent::Failed(e) => return Some(Ok(error(to_status(EngineError::from(e))))),
                    _ => return None,
                };
                let piece = InferTensor {
                    name: "text_output".into(),
                    shape: vec![1],
                    data: InferData::Bytes(vec![text.into_bytes()]),
                };
                Some(Ok(pb::ModelStreamInferResponse {
                    error_message: String::new(),
                    infer_response: Some(response(&model, id, vec![piece])),
                }))
            }
        });
        Box::pin(pieces)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for KserveService {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: self.engine.is_ready() }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        allow_model(request.extensions().get(), &request.get_ref().name)?;
        let r = request.into_inner();
        let key = self.key(&r.name, &r.version)?;
        match self.engine.model_ready(&key) {
            Some(ready) => Ok(Response::new(pb::ModelReadyResponse { ready })),
            None => Err(to_status(EngineError::ModelNotFound(r.name))),
        }
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "ferroserve".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::api::KSERVE_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        use pb::model_metadata_response::TensorMetadata;
        allow_model(request.extensions().get(), &request.get_ref().name)?;
        let r = request.into_inner();
        let key = self.key(&r.name, &r.version)?;
        let sig = self.engine.signature(&key).map_err(to_status)?;
        let tensors = |list: Vec<(String, &str, Vec<i64>)>| {
            list.into_iter()
                .map(|(name, datatype, shape)| TensorMetadata { name, datatype: datatype.into(), shape })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            versions: self.engine.versions_of(&r.name),
            name: r.name,
            platform: sig.platform.into(),
            inputs: tensors(sig.inputs),
            outputs: tensors(sig.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let principal = request.extensions().get::<Principal>().cloned();
        Ok(Response::new(self.infer_one(principal.as_ref(), request.into_inner()).await?))
    }

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<StreamOut>, Status> {
        let service = self.clone();
        let principal = request.extensions().get::<Principal>().cloned();
        let responses = request
            .into_inner()
            .then(move |item| {
                let (service, principal) = (service.clone(), principal.clone());
                async move {
                    match item {
                        Ok(request) => service.stream_one(principal.as_ref(), request).await,
                        Err(status) => Box::pin(futures::stream::once(async { Err(status) })) as StreamOut,
                    }
                }
            })
            .flatten();
        Ok(Response::new(Box::pin(responses)))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        use pb::repository_index_response::ModelIndex;
        let ready_only = request.into_inner().ready;
        let models = self
            .engine
            .repository_index()
            .into_iter()
            .filter(|m| !ready_only || m.state == "READY")
            .map(|m| ModelIndex { name: m.name, version: "1".into(), state: m.state.into(), reason: m.reason })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        self.engine.load_model(&request.into_inner().model_name).await.map_err(to_status)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        self.engine.unload_model(&request.into_inner().model_name).map_err(to_status)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        if !request.get_ref().name.is_empty() {
            allow_model(request.extensions().get(), &request.get_ref().name)?;
        }
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        let stats = self.engine.inference_statistics(name).map_err(to_status)?;
        let duration = |(count, ns): (u64, u64)| Some(pb::StatisticDuration { count, ns });
        let model_stats = stats
            .into_iter()
            .map(|(name, s)| pb::ModelStatistics {
                name,
                version: "1".into(),
                last_inference: s.last_inference_ms,
                inference_count: s.inference_count,
                execution_count: s.execution_count,
                inference_stats: Some(pb::InferStatistics {
                    success: duration(s.success),
                    fail: duration(s.fail),
                    queue: duration(s.queue),
                    compute_infer: duration(s.compute),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        allow_model(request.extensions().get(), &request.get_ref().name)?;
        let r = request.into_inner();
        let key = self.key(&r.name, &r.version)?;
        let sig = self.engine.signature(&key).map_err(to_status)?;
        let data_type = |datatype: &str| {
            pb::DataType::from_str_name(&crate::engine::triton_type(datatype)).unwrap_or(pb::DataType::TypeInvalid)
                as i32
        };
        let input = sig
            .inputs
            .iter()
            .map(|(name, datatype, shape)| pb::ModelInput {
                name: name.clone(),
                data_type: data_type(datatype),
                dims: sig.triton_dims(shape),
                ..Default::default()
            })
            .collect();
        let output = sig
            .outputs
            .iter()
            .map(|(name, datatype, shape)| pb::ModelOutput {
                name: name.clone(),
                data_type: data_type(datatype),
                dims: sig.triton_dims(shape),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: r.name,
                platform: sig.platform.into(),
                max_batch_size: sig.max_batch_size as i32,
                input,
                output,
                ..Default::default()
            }),
        }))
    }
}
