//! Compiles the `.proto` files with protox (pure Rust, no `protoc` needed) and generates tonic code,
//! plus the encoded descriptor sets that gRPC server reflection serves.
//!
//! Two sets: ferroserve's own API, whose services must implement every method, and Qdrant's, whose services
//! get default stubs answering UNIMPLEMENTED for the methods ferroserve does not serve (the `Points` service
//! alone has 30). Both get clients too: chain steps call another Qdrant over gRPC.

use std::path::Path;

use protox::prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    compile(&["ferroserve/v1/inference.proto"], &["."], &out.join("descriptor.bin"), false)?;
    compile(&["qdrant/qdrant.proto"], &["qdrant"], &out.join("qdrant_descriptor.bin"), true)?;
    println!("cargo:rerun-if-changed=qdrant");
    // Triton's protocol comes compiled (see triton/README.md).
    println!("cargo:rerun-if-changed=triton/triton.fds");
    let bytes = std::fs::read("triton/triton.fds")?;
    let fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    std::fs::write(out.join("triton_descriptor.bin"), &bytes)?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .generate_default_stubs(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

fn compile(
    protos: &[&str],
    includes: &[&str],
    descriptor: &Path,
    stubs: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, includes)?;
    std::fs::write(descriptor, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .generate_default_stubs(stubs)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
