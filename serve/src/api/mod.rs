//! Transports: thin adapters that decode wire types, call the engine, and encode its answers.

pub mod grpc;
pub mod http;
mod tensor_wire;

/// The Qdrant version whose API the collections endpoints answer like (REST `GET /`, gRPC `HealthCheck`;
/// `qdrant-client` compares it with its own).
pub const QDRANT_API_VERSION: &str = "1.20.0";
