//! The gRPC transport: the native `ferroserve.v1.Inference` service, KServe v2's (Triton's)
//! `inference.GRPCInferenceService`, Qdrant's `Collections`, `Points` and `Qdrant` services, the standard health service, and server reflection (so `grpcurl` works without the
//! proto files).

mod auth;
mod kserve;
mod metrics;
mod native;
mod qdrant;
mod scheduling;
mod status;

use std::sync::Arc;

use axum::http::HeaderName;
use ferroserve_proto::ferroserve::v1::inference_server::InferenceServer;
use ferroserve_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use ferroserve_proto::qdrant::{
    collections_server::CollectionsServer, points_server::PointsServer, qdrant_server::QdrantServer,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::api::auth::Keys;
use crate::api::connections::{Conn, ConnectionLimits, ConnectionSlots, after_accept_error, secure};
use crate::config::ServerConfig;
use crate::engine::Engine;

pub use native::NativeService;
pub use qdrant::QdrantService;

/// Serves gRPC on `listener` until `shutdown` fires, then lets in-flight calls finish. `keys`: the API keys
/// calls must carry (`None`: authentication off).
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    keys: Option<Arc<Keys>>,
    tls: Option<TlsAcceptor>,
    config: &ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let max_message_bytes = config.max_body_bytes;
    let limits = &config.connections;
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(engine.clone(), health, shutdown.clone()));
    // Both reflection versions: grpcurl and older tools still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ferroserve_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(ferroserve_proto::QDRANT_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(ferroserve_proto::TRITON_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    // Every service: messages up to the size limit in, any size out; gzip and zstd in, and out to clients
    // that accept them (`grpc-accept-encoding`).
    macro_rules! configured {
        ($server:expr) => {
            $server
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(usize::MAX)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
        };
    }
    let inference = configured!(InferenceServer::new(NativeService::new(engine.clone())));
    let kserve = configured!(GrpcInferenceServiceServer::new(kserve::KserveService::new(engine.clone())));
    let qdrant = QdrantService::new(engine.clone());
    let collections = configured!(CollectionsServer::new(qdrant.clone()));
    let points = configured!(PointsServer::new(qdrant.clone()));
    let request_id = HeaderName::from_static("x-request-id");
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(limits.keepalive()))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout()))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(
            TraceLayer::new_for_grpc()
                .make_span_with(|request: &axum::http::Request<_>| crate::telemetry::request_span("grpc", request)),
        )
        .layer(metrics::GrpcMetricsLayer)
        .layer(auth::GrpcAuthLayer { keys, engine: engine.clone() })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .add_service(kserve)
        .add_service(collections)
        .add_service(points)
        .add_service(configured!(QdrantServer::new(qdrant)))
        .serve_with_incoming_shutdown(incoming(listener, limits, tls), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// The connections of `listener` within the port's cap, through the TLS handshake when `tls` is set (each
/// handshake in its own task, so a slow client does not hold the others up). One over the cap is closed at
/// once (the client sees UNAVAILABLE), never left unanswered.
fn incoming(
    listener: tokio::net::TcpListener,
    limits: &ConnectionLimits,
    tls: Option<TlsAcceptor>,
) -> impl futures::Stream<Item = std::io::Result<Conn>> {
    let slots = ConnectionSlots::new(limits.connections_per_port(), "grpc");
    let handshake = limits.header_read_timeout();
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped taking connections.
                _ = sender.closed() => return,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    after_accept_error(&e).await;
                    continue;
                }
            };
            let Ok(admitted) = slots.admit(tcp) else { continue };
            let (sender, tls) = (sender.clone(), tls.clone());
            tokio::spawn(async move {
                if let Some(conn) = secure(admitted, tls.as_ref(), handshake).await {
                    let _ = sender.send(Ok(conn)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// Reports NOT_SERVING until every model is loaded, SERVING after, and NOT_SERVING again on shutdown.
async fn report_health(engine: Arc<Engine>, health: HealthReporter, shutdown: CancellationToken) {
    const SERVICE: &str = "ferroserve.v1.Inference";
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_service_status(SERVICE, ServingStatus::NotServing).await;
    let mut ready = engine.watch_ready();
    tokio::select! {
        loaded = ready.wait_for(|r| *r) => if loaded.is_err() { return },
        _ = shutdown.cancelled() => return,
    }
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_service_status(SERVICE, ServingStatus::Serving).await;
    shutdown.cancelled().await;
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_service_status(SERVICE, ServingStatus::NotServing).await;
}
