//! Start-up, readiness, health checking and graceful shutdown of the real process.

use std::time::Duration;

use ferroserve_e2e::{MODEL, Server, wait_for_metric};
use serde_json::json;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[tokio::test]
async fn grpc_health_reports_serving_once_ready() {
    let server = Server::start(&[]).await;
    let channel = tonic::transport::Channel::from_shared(server.grpc.clone()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "ferroserve.v1.Inference"] {
        // Watch streams the current status, then every change: SERVING must come (right after /ready).
        let mut updates = health.watch(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        let serving = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(update) = updates.message().await.unwrap() {
                if update.status() == ServingStatus::Serving {
                    return true;
                }
            }
            false
        });
        assert!(serving.await.unwrap(), "service {service:?} never reported SERVING");
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "service {service:?}");
    }
    let r = health.check(HealthCheckRequest { service: "no.such.Service".into() }).await.unwrap_err();
    assert_eq!(r.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn grpc_reflection_lists_and_describes_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let server = Server::start(&[]).await;
    let channel = tonic::transport::Channel::from_shared(server.grpc.clone()).unwrap().connect().await.unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let ask = |m: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(m) };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol("ferroserve.v1.Inference".into())),
        ask(MessageRequest::FileContainingSymbol("qdrant.Points".into())),
        ask(MessageRequest::FileByFilename("points.proto".into())),
        ask(MessageRequest::FileByFilename("qdrant_common.proto".into())),
        ask(MessageRequest::FileByFilename("google/protobuf/timestamp.proto".into())),
    ];
    let mut responses = client.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();

    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "ferroserve.v1.Inference",
        "qdrant.Points",
        "qdrant.Collections",
        "qdrant.Qdrant",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors")
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let text = String::from_utf8_lossy(&files.file_descriptor_proto[0]);
    assert!(text.contains("EmbedStream") && text.contains("ferroserve/v1/inference.proto"));
    // Qdrant's services, and every file they import by name (how grpcurl describes them without the protos).
    let mut served = Vec::new();
    for _ in 0..4 {
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            responses.message().await.unwrap().unwrap().message_response
        else {
            panic!("expected Qdrant's file descriptors")
        };
        served.push(
            files.file_descriptor_proto.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect::<String>(),
        );
    }
    for (text, file) in served.iter().zip([
        "points_service.proto",
        "points.proto",
        "qdrant_common.proto",
        "google/protobuf/timestamp.proto",
    ]) {
        assert!(text.contains(file), "{file} missing from {text:?}");
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let mut server = Server::start(&[]).await;
    let client = reqwest::Client::new();
    // A request big enough to still be computing when SIGTERM arrives.
    let inputs: Vec<String> =
        (0..512).map(|i| format!("sentence number {i} about graceful shutdown of servers")).collect();
    let url = format!("{}/v1/embeddings", server.http);
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&json!({"model": MODEL, "input": inputs})).send().await });
    // In flight: its sequences are queued behind the batch the lane is computing.
    wait_for_metric(&server, &format!("ferroserve_queue_depth{{model=\"{MODEL}\"}}"), |d| d > 0.0).await;
    server.terminate();
    let response = in_flight.await.unwrap().expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 512);
    assert!(server.wait_exit(Duration::from_secs(30)), "clean exit; log: {}", server.log.display());
    let log = server.log_text();
    assert!(log.contains("SIGTERM received") && log.contains("stopped"), "{log}");
    // New connections are refused after shutdown.
    assert!(reqwest::get(format!("{}/health", server.http)).await.is_err());
}
