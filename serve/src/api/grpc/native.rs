//! `ferroserve.v1.Inference`: the native gRPC API, a thin adapter over the engine.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use ferroserve_proto::ferroserve::v1::{
    self as pb, EmbedRequest, EmbedResponse, ListModelsRequest, ListModelsResponse, inference_server::Inference,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::scheduling::CallOptions;
use super::status::to_status;
use crate::engine::{self, Engine, EngineError};

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

    /// Runs one request; returns the response and its (queue, inference) times in milliseconds.
    async fn embed_one(&self, req: EmbedRequest, call: &CallOptions) -> Result<(EmbedResponse, [f64; 2]), Status> {
        let started = Instant::now();
        let model = req.model.clone();
        let request_id = req.request_id.clone();
        let (priority, timeout) = call.for_message(req.priority, req.timeout_ms)?;
        let request = engine::EmbedRequest {
            model: req.model,
            inputs: req.inputs,
            normalize: req.normalize,
            truncate: req.truncate,
            dimensions: req.dimensions.map(|d| d as usize),
            priority,
            timeout,
        };
        let result = self.engine.embed(request).await;
        self.observe("Embed", &model, &result, started);
        let out = result.map_err(to_status)?;
        let times = [out.queue_time.as_secs_f64() * 1000.0, out.compute_time.as_secs_f64() * 1000.0];
        let response = EmbedResponse {
            model: out.model,
            embeddings: out.vectors.into_iter().map(|values| pb::Embedding { values }).collect(),
            prompt_tokens: u32::try_from(out.prompt_tokens).unwrap_or(u32::MAX),
            request_id,
            error: None,
        };
        Ok((response, times))
    }

    fn observe<T>(&self, method: &'static str, model: &str, result: &Result<T, EngineError>, started: Instant) {
        let model = if self.engine.has_model(model) { model.to_string() } else { String::new() };
        let code = match result {
            Ok(_) => "OK".to_string(),
            Err(e) => format!("{:?}", to_status(e.clone()).code()),
        };
        metrics::histogram!("ferroserve_grpc_request_duration_seconds", "method" => method, "model" => model.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("ferroserve_grpc_requests_total", "method" => method, "model" => model, "code" => code)
            .increment(1);
    }
}

type EmbedStreamOut = Pin<Box<dyn Stream<Item = Result<EmbedResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Inference for NativeService {
    async fn embed(&self, request: Request<EmbedRequest>) -> Result<Response<EmbedResponse>, Status> {
        let call = CallOptions::from_metadata(request.metadata())?;
        let (body, [queue_ms, inference_ms]) = self.embed_one(request.into_inner(), &call).await?;
        let mut response = Response::new(body);
        for (key, ms) in [("x-queue-time", queue_ms), ("x-inference-time", inference_ms)] {
            if let Ok(value) = format!("{ms:.3}").parse() {
                response.metadata_mut().insert(key, value);
            }
        }
        Ok(response)
    }

    type EmbedStreamStream = EmbedStreamOut;

    async fn embed_stream(
        &self,
        request: Request<Streaming<EmbedRequest>>,
    ) -> Result<Response<Self::EmbedStreamStream>, Status> {
        let service = self.clone();
        let call = CallOptions::from_metadata(request.metadata())?;
        let responses = request
            .into_inner()
            .map(move |item| {
                let service = service.clone();
                async move {
                    let req = item?;
                    let request_id = req.request_id.clone();
                    Ok(match service.embed_one(req, &call).await {
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

    async fn list_models(&self, _: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let models = self
            .engine
            .list_models()
            .into_iter()
            .map(|m| pb::ModelInfo {
                name: m.name,
                task: format!("{:?}", m.task).to_lowercase(),
                backend: m.backend,
                ready: m.ready,
                dimensions: m.dimensions.unwrap_or(0) as u32,
                max_input_tokens: m.max_input_tokens.unwrap_or(0) as u32,
            })
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }
}
