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
