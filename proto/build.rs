//! Compiles the `.proto` files with protox (pure Rust, no `protoc` needed) and generates tonic code,
//! plus the encoded descriptor set that gRPC server reflection serves.

use protox::prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["ferroserve/v1/inference.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().codec_path("crate::codec::ProtoCodec").compile_fds(fds)?;
    Ok(())
}
