//! Raw tensors of Triton's binary extension (REST bodies after the JSON header, gRPC `raw_input_contents`):
//! the first byte picks the datatype, the rest is the tensor.
#![no_main]

use ferroserve::api::tensor_wire::decode;
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 14] =
    ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, raw)) = data.split_first() else { return };
    let _ = decode(raw, TYPES[kind as usize % TYPES.len()]);
});
