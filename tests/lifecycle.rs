//! Start-up, readiness, health checking and graceful shutdown of the real process.

use std::time::Duration;

use ferroserve_e2e::{MODEL, Server};
use serde_json::json;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[tokio::test]
async fn grpc_health_reports_serving_once_ready() {
    let server = Server::start(&[]).await;
    let channel = tonic::transport::Channel::from_shared(server.grpc.clone()).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "ferroserve.v1.Inference"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "service {service:?}");
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
    tokio::time::sleep(Duration::from_millis(300)).await;
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
