//! Request metrics of the gRPC listener, taken from what was actually sent: the `grpc-status` of every call
//! (in a trailers-only answer or in the trailers after a stream), so calls that never reach a handler —
//! a message that does not decode, an unknown method, a message over the size limit — are counted too.
//! A handler names the model a call was for through [`CallModel`], found in the request's extensions.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};

/// Methods counted under their own name; anything else a client asks for is `unknown` (bounded labels).
const METHODS: &[&str] = &[
    "/ferroserve.v1.Inference/Embed",
    "/ferroserve.v1.Inference/EmbedStream",
    "/ferroserve.v1.Inference/Generate",
    "/ferroserve.v1.Inference/ListModels",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The model a call was for; set by the handler, read when the call ends.
#[derive(Clone, Default)]
pub struct CallModel(Arc<Mutex<Option<String>>>);

impl CallModel {
    pub fn set(&self, model: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(model.to_string());
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }
}

/// Wraps the gRPC services with [`GrpcMetrics`].
#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<Observed<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = METHODS.iter().find(|m| **m == path).and_then(|m| m.rsplit('/').next()).unwrap_or("unknown");
        let model = CallModel::default();
        request.extensions_mut().insert(model.clone());
        let call = Call { method, model, started: Instant::now(), done: false };
        let future = self.inner.call(request);
        Box::pin(async move {
            let (parts, body) = future.await?.into_parts();
            let mut body = Observed { inner: body, call };
            if let Some(code) = status_of(&parts.headers) {
                body.call.finish(code); // trailers-only: the call ended here
            }
            Ok(Response::from_parts(parts, body))
        })
    }
}

fn status_of(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

/// One call until its status is known.
struct Call {
    method: &'static str,
    model: CallModel,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (method, model, code) = (self.method, self.model.get(), code_name(code));
        metrics::histogram!("ferroserve_grpc_request_duration_seconds", "method" => method, "model" => model.clone())
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!("ferroserve_grpc_requests_total", "method" => method, "model" => model, "code" => code)
            .increment(1);
    }
}

/// The canonical name of a status code, as the gRPC specification writes it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Drop for Call {
    /// A body dropped before its trailers: the client went away.
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that reports the call's status when its trailers pass.
pub struct Observed<B> {
    inner: B,
    call: Call,
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    self.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.call.finish(Code::Internal),
            Poll::Ready(None) => self.call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
