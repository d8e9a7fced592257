//! An ONNX file decoded and put through the INT8 and FP16 rewrites of `ferroserve quantize`, which trust
//! nothing in the graph: an error is fine, a panic is not.
#![no_main]

use ferroserve_models::onnx::proto::ModelProto;
use ferroserve_models::quantize::{Granularity, convert_fp16, quantize_int8};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = ModelProto::decode(data) else { return };
    let _ = quantize_int8(&mut model.clone(), Granularity::PerChannel, |_, _| {});
    let _ = quantize_int8(&mut model.clone(), Granularity::PerTensor, |_, _| {});
    let _ = convert_fp16(&mut model.clone());
});
