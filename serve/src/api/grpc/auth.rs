//! API keys on the gRPC port: a layer that checks the key in the call's metadata (`authorization: Bearer
//! <key>` or `api-key`) against what the method needs ([`access_of`]) and the key's request rate, answering
//! UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED, or passing the call on with its [`Principal`] in the request's extensions, where the
//! handlers of model-addressing methods find it ([`allow_model`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Request, Response};
use futures::future::{BoxFuture, FutureExt};
use tonic::Status;
use tower::{Layer, Service};

use crate::api::auth::{Access, AuthError, Keys, Principal};
use crate::engine::Engine;
use crate::ratelimit::Decision;

/// Methods of Qdrant's `Collections` and `Points` services that only read; every other one writes and needs
/// the admin scope.
const QDRANT_READS: &[&str] = &[
    "/qdrant.Collections/Get",
    "/qdrant.Collections/List",
    "/qdrant.Collections/CollectionExists",
    "/qdrant.Collections/CollectionClusterInfo",
    "/qdrant.Collections/ListCollectionAliases",
    "/qdrant.Collections/ListAliases",
    "/qdrant.Points/Get",
    "/qdrant.Points/Scroll",
    "/qdrant.Points/Count",
    "/qdrant.Points/Query",
    "/qdrant.Points/QueryBatch",
    "/qdrant.Points/QueryGroups",
    "/qdrant.Points/Search",
    "/qdrant.Points/SearchBatch",
    "/qdrant.Points/SearchGroups",
    "/qdrant.Points/Recommend",
    "/qdrant.Points/RecommendBatch",
    "/qdrant.Points/RecommendGroups",
    "/qdrant.Points/Discover",
    "/qdrant.Points/DiscoverBatch",
    "/qdrant.Points/Facet",
    "/qdrant.Points/SearchMatrixPairs",
    "/qdrant.Points/SearchMatrixOffsets",
];

/// Methods anyone may call: health, reflection, liveness and readiness.
const OPEN: &[&str] = &[
    "/qdrant.Qdrant/HealthCheck",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
];

/// What a method needs; a method that names a model also checks it in its handler.
fn access_of(path: &str) -> Access {
    let open_service = path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.");
    if open_service || OPEN.contains(&path) {
        Access::Open
    } else if path.starts_with("/inference.GRPCInferenceService/Repository")
        || ((path.starts_with("/qdrant.Collections/") || path.starts_with("/qdrant.Points/"))
            && !QDRANT_READS.contains(&path))
    {
        Access::Admin
    } else {
        Access::Any
    }
}

/// Refuses a call whose key may not use `model`. `principal` is the one [`GrpcAuth`] put in the call's
/// extensions (always there behind the layer).
pub fn allow_model(principal: Option<&Principal>, model: &str) -> Result<(), Status> {
    match principal {
        Some(principal) => principal.allow(&Access::Model(model.to_string())).map_err(status_of),
        None => Ok(()),
    }
}

fn status_of(e: AuthError) -> Status {
    match e {
        AuthError::Forbidden(message) => Status::permission_denied(message),
        other => Status::unauthenticated(other.to_string()),
    }
}

/// Wraps the gRPC services with [`GrpcAuth`]; `keys` `None`: authentication off.
#[derive(Clone)]
pub struct GrpcAuthLayer {
    pub keys: Option<Arc<Keys>>,
    pub engine: Arc<Engine>,
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth { inner, keys: self.keys.clone(), engine: self.engine.clone() }
    }
}

/// Checks the key and the method's needs, then the key's request rate (RESOURCE_EXHAUSTED with
/// `retry-after-ms` when over it; tokens are limited on the REST routes, where the body is read first).
#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    keys: Option<Arc<Keys>>,
    engine: Arc<Engine>,
}

impl<S, B, RB> Service<Request<B>> for GrpcAuth<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let access = access_of(request.uri().path());
        let principal = match &self.keys {
            None => Ok(Principal::anonymous()),
            Some(keys) => keys.authorize(request.headers(), &access),
        };
        let principal = match principal {
            Ok(principal) => principal,
            Err(e) => {
                let response = status_of(e).into_http();
                return async move { Ok(response) }.boxed();
            }
        };
        // The service that was polled ready serves this call; a clone takes its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.engine.clone();
        async move {
            if access != Access::Open && !principal.limits.is_empty() {
                let decision = engine.rate_limiter().admit(&principal.name, &principal.limits, 0).await;
                if let Decision::Refused { retry_after, message, .. } = decision {
                    let mut status = Status::resource_exhausted(message);
                    if let Ok(value) = retry_after.as_millis().max(1).to_string().parse() {
                        status.metadata_mut().insert("retry-after-ms", value);
                    }
                    return Ok(status.into_http());
                }
            }
            request.extensions_mut().insert(principal);
            inner.call(request).await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_need_what_they_change() {
        assert_eq!(access_of("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Access::Open);
        assert_eq!(access_of("/inference.GRPCInferenceService/ServerLive"), Access::Open);
        assert_eq!(access_of("/inference.GRPCInferenceService/ModelInfer"), Access::Any);
        assert_eq!(access_of("/inference.GRPCInferenceService/RepositoryModelLoad"), Access::Admin);
        assert_eq!(access_of("/qdrant.Points/Query"), Access::Any);
        assert_eq!(access_of("/qdrant.Points/Upsert"), Access::Admin);
        assert_eq!(access_of("/qdrant.Collections/Create"), Access::Admin);
        assert_eq!(access_of("/qdrant.Collections/List"), Access::Any);
        assert_eq!(access_of("/ferroserve.v1.Inference/Embed"), Access::Any);
    }
}
