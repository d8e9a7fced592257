//! Transports: thin adapters that decode wire types, call the engine, and encode its answers; and the API
//! keys both of them check.

pub mod auth;
pub mod connections;
pub mod grpc;
pub mod http;
pub mod tensor_wire;
pub mod tls;

/// The Qdrant version whose API the collections endpoints answer like (REST `GET /`, gRPC `HealthCheck`;
/// `qdrant-client` compares it with its own).
pub const QDRANT_API_VERSION: &str = "1.20.0";

/// The KServe v2 / Triton protocol extensions both transports serve (server metadata lists them).
pub const KSERVE_EXTENSIONS: [&str; 4] =
    ["binary_tensor_data", "model_repository", "statistics", "model_configuration"];
