//! `ferroserve.v1.Inference`: the native gRPC API, a thin adapter over the engine.

use std::pin::Pin;
use std::sync::Arc;

use ferroserve_models::llm::{ChatMessage, SamplingParams};
use ferroserve_proto::ferroserve::v1::{
    self as pb, EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, ListModelsRequest, ListModelsResponse,
    inference_server::Inference,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::allow_model;
use super::metrics::CallModel;
use super::scheduling::CallOptions;
use super::status::to_status;
use crate::api::auth::Principal;
use crate::engine::{self, Engine, EngineError, ResponseMeta};
use crate::generation::{GenerationEvent, Prompt};

/// How many requests of one EmbedStream call run at once; responses still come back in order.
const STREAM_CONCURRENCY: usize = 16;

#[derive(Clone)]
pub struct NativeService {
    engine: Arc<Engine>,
}

impl NativeService {
    pub fn new(engine: Arc<Engine>) -> Self {
        NativeService { engine }
    }

    /// Runs one request; returns the response and how it was served.
    async fn embed_one(&self, req: EmbedRequest, call: &CallOptions) -> Result<(EmbedResponse, ResponseMeta), Status> {
        let request_id = req.request_id.clone();
        let (priority, timeout) = call.for_message(req.priority, req.timeout_ms)?;
        let request = engine::EmbedRequest {
            model: req.model,
            inputs: req.inputs,
            normalize: req.normalize,
            truncate: req.truncate.into(),
            dimensions: req.dimensions.map(|d| d as usize),
            cache: call.cache,
            priority,
            timeout,
        };
        let out = self.engine.embed_routed(request, call.route_key.as_deref()).await.map_err(to_status)?;
        let meta = out.meta();
        let response = EmbedResponse {
            model: out.model,
            embeddings: out.vectors.into_iter().map(|values| pb::Embedding { values }).collect(),
            prompt_tokens: u32::try_from(out.prompt_tokens).unwrap_or(u32::MAX),
            request_id,
            error: None,
        };
        Ok((response, meta))
    }

    /// Names the call's model in its metrics (only models this server has: labels stay bounded).
    fn label<T>(&self, request: &Request<T>, model: &str) {
        if self.engine.has_model(model)
            && let Some(slot) = request.extensions().get::<CallModel>()
        {
            slot.set(model);
        }
    }
}

/// Copies a response's [`ResponseMeta`] into its gRPC metadata.
fn with_meta<T>(mut response: Response<T>, meta: &ResponseMeta) -> Response<T> {
    for (key, value) in meta.pairs() {
        if let Ok(value) = value.parse() {
            response.metadata_mut().insert(key, value);
        }
    }
    response
}

type EmbedStreamOut = Pin<Box<dyn Stream<Item = Result<EmbedResponse, Status>> + Send>>;
type GenerateOut = Pin<Box<dyn Stream<Item = Result<GenerateResponse, Status>> + Send>>;
type RunChainOut = Pin<Box<dyn Stream<Item = Result<pb::RunChainResponse, Status>> + Send>>;

/// The engine request of a gRPC `GenerateRequest`.
fn generate_request(req: GenerateRequest, call: &CallOptions) -> Result<engine::GenerateRequest, Status> {
    let (priority, timeout) = call.for_message(req.priority, req.timeout_ms)?;
    let prompt = match (req.prompt.is_empty(), req.messages.is_empty()) {
        (false, false) => return Err(Status::invalid_argument("set prompt or messages, not both")),
        (true, true) => return Err(Status::invalid_argument("prompt and messages are both empty")),
        (false, true) => Prompt::Text(req.prompt),
        (true, false) => {
            Prompt::Chat(req.messages.into_iter().map(|m| ChatMessage { role: m.role, content: m.content }).collect())
        }
    };
    let d = SamplingParams::default();
    Ok(engine::GenerateRequest {
        model: req.model,
        prompt,
        params: SamplingParams {
            temperature: req.temperature.unwrap_or(d.temperature),
            top_p: req.top_p.unwrap_or(d.top_p),
            top_k: req.top_k.map_or(d.top_k, |k| k as usize),
            min_p: req.min_p.unwrap_or(d.min_p),
            repetition_penalty: req.repetition_penalty.unwrap_or(d.repetition_penalty),
            frequency_penalty: req.frequency_penalty.unwrap_or(d.frequency_penalty),
            presence_penalty: req.presence_penalty.unwrap_or(d.presence_penalty),
            seed: req.seed,
            logprobs: None,
            logit_bias: Vec::new(),
        },
        max_tokens: req.max_tokens.map(|n| n as usize),
        stop: req.stop,
        ignore_eos: false,
        cache: call.cache,
        priority,
        timeout,
    })
}

fn generate_response(event: GenerationEvent) -> Result<GenerateResponse, Status> {
    Ok(match event {
        GenerationEvent::Token { id, text, .. } => GenerateResponse { text, token_ids: vec![id], ..Default::default() },
        GenerationEvent::Done { finish_reason, text, usage } => GenerateResponse {
            text,
            token_ids: Vec::new(),
            finish_reason: finish_reason.as_str().to_string(),
            usage: Some(pb::GenerationUsage {
                prompt_tokens: usage.prompt_tokens as u32,
                completion_tokens: usage.completion_tokens as u32,
                cached_tokens: usage.cached_tokens as u32,
            }),
        },
        GenerationEvent::Failed(e) => return Err(to_status(EngineError::from(e))),
    })
}

#[tonic::async_trait]
impl Inference for NativeService {
    async fn embed(&self, request: Request<EmbedRequest>) -> Result<Response<EmbedResponse>, Status> {
        self.label(&request, &request.get_ref().model);
        allow_model(request.extensions().get(), &request.get_ref().model)?;
        let call = CallOptions::from_metadata(request.metadata())?.keyed_by(request.extensions().get());
        let (body, meta) = self.embed_one(request.into_inner(), &call).await?;
        Ok(with_meta(Response::new(body), &meta))
    }

    type EmbedStreamStream = EmbedStreamOut;

    async fn embed_stream(
        &self,
        request: Request<Streaming<EmbedRequest>>,
    ) -> Result<Response<Self::EmbedStreamStream>, Status> {
        let service = self.clone();
        let call = CallOptions::from_metadata(request.metadata())?.keyed_by(request.extensions().get());
        let principal = request.extensions().get::<Principal>().cloned();
        let responses = request
            .into_inner()
            .map(move |item| {
                let (service, principal, call) = (service.clone(), principal.clone(), call.clone());
                async move {
                    let req = item?;
                    let request_id = req.request_id.clone();
                    let answer = match allow_model(principal.as_ref(), &req.model) {
                        Ok(()) => service.embed_one(req, &call).await,
                        Err(denied) => Err(denied),
                    };
                    Ok(match answer {
                        Ok((resp, _)) => resp,
                        Err(status) => EmbedResponse {
                            request_id,
                            error: Some(pb::Error {
                                code: status.code() as i32,
                                message: status.message().to_string(),
                            }),
                            ..Default::default()
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(responses)))
    }

    type GenerateStream = GenerateOut;

    async fn generate(&self, request: Request<GenerateRequest>) -> Result<Response<Self::GenerateStream>, Status> {
        self.label(&request, &request.get_ref().model);
        allow_model(request.extensions().get(), &request.get_ref().model)?;
        let call = CallOptions::from_metadata(request.metadata())?.keyed_by(request.extensions().get());
        let req = generate_request(request.into_inner(), &call)?;
        let generation = self.engine.generate_routed(req, call.route_key.as_deref()).await.map_err(to_status)?;
        let meta = generation.meta();
        let responses = tokio_stream::wrappers::UnboundedReceiverStream::new(generation.events).map(generate_response);
        Ok(with_meta(Response::new(Box::pin(responses) as Self::GenerateStream), &meta))
    }

    type RunChainStream = RunChainOut;

    async fn run_chain(&self, request: Request<pb::RunChainRequest>) -> Result<Response<Self::RunChainStream>, Status> {
        let deadline = CallOptions::from_metadata(request.metadata())?.deadline;
        let req = request.into_inner();
        let json = |text: &str, field: &str| -> Result<Option<serde_json::Value>, Status> {
            if text.trim().is_empty() {
                return Ok(None);
            }
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| Status::invalid_argument(format!("{field} is not JSON: {e}")))
        };
        let input = json(&req.input_json, "input_json")?.unwrap_or(serde_json::Value::Null);
        let configurable = json(&req.configurable_json, "configurable_json")?;
        let running =
            self.engine.stream_chain(&req.chain, input, configurable.as_ref(), deadline).map_err(to_status)?;
        let engine::ChainStream { tokens, done } = running;
        let text = tokio_stream::wrappers::UnboundedReceiverStream::new(tokens).map(|piece| {
            Ok(pb::RunChainResponse { event: Some(pb::run_chain_response::Event::Text(piece)), steps: Vec::new() })
        });
        let last = futures::stream::once(async move {
            match done.await {
                Ok(Ok(run)) => Ok(pb::RunChainResponse {
                    event: Some(pb::run_chain_response::Event::OutputJson(run.output.to_string())),
                    steps: run
                        .steps
                        .into_iter()
                        .map(|s| pb::ChainStep {
                            name: s.name,
                            r#type: s.kind.to_string(),
                            seconds: s.seconds,
                            prompt_tokens: s.prompt_tokens as u32,
                            completion_tokens: s.completion_tokens as u32,
                        })
                        .collect(),
                }),
                Ok(Err(e)) => Err(to_status(e)),
                Err(_) => Err(Status::internal("the chain's task stopped")),
            }
        });
        Ok(Response::new(Box::pin(text.chain(last)) as Self::RunChainStream))
    }

    async fn list_models(&self, request: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let principal = request.extensions().get::<Principal>();
        let models = self
            .engine
            .list_models()
            .into_iter()
            .filter(|m| principal.is_none_or(|p| p.may_use(&m.name)))
            .map(|m| pb::ModelInfo {
                name: m.name,
                task: m.task.as_str().to_string(),
                backend: m.backend.to_string(),
                ready: m.ready,
                dimensions: m.dimensions.unwrap_or(0) as u32,
                max_input_tokens: m.max_input_tokens.unwrap_or(0) as u32,
            })
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }
}
