//! Generates Rust types for the ONNX model format (`proto/onnx/onnx.proto`) with protox and prost: the
//! ONNX backend reads tensors with them, and exporters write graphs with them. No `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/onnx/onnx.proto");
    let fds = protox::compile(["onnx/onnx.proto"], ["../proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
