//! Rust types and tonic services generated from the `.proto` files in this folder.

pub mod codec;

/// The native ferroserve API, `ferroserve.v1`.
pub mod ferroserve {
    pub mod v1 {
        tonic::include_proto!("ferroserve.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// Qdrant's gRPC API (package `qdrant`), from the `.proto` files the `qdrant-client` wheel ships.
#[allow(clippy::large_enum_variant)]
pub mod qdrant {
    tonic::include_proto!("qdrant");
}

/// Encoded `FileDescriptorSet` of Qdrant's protos, for gRPC server reflection.
pub const QDRANT_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/qdrant_descriptor.bin"));

/// Triton's gRPC protocol (package `inference`): KServe v2's `GRPCInferenceService` and Triton's extensions.
#[allow(clippy::large_enum_variant)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// Encoded `FileDescriptorSet` of Triton's protocol, for gRPC server reflection.
pub const TRITON_FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/triton_descriptor.bin"));
