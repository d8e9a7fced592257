//! Transports: thin adapters that decode wire types, call the engine, and encode its answers.

pub mod grpc;
pub mod http;
