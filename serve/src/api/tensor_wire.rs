//! The Open Inference Protocol's raw tensor encoding, shared by REST's binary tensor extension and gRPC's
//! `raw_input_contents` / `raw_output_contents`: values little-endian and packed; BYTES elements each as a
//! 4-byte little-endian length, then the bytes. Errors say what is wrong, for the caller to name the tensor.

use ferroserve_models::onnx::TensorData;

use crate::engine::{InferData, element_type};

/// Decodes `raw` as `datatype`.
pub fn decode(raw: &[u8], datatype: &str) -> Result<InferData, String> {
    if datatype == "BYTES" {
        return decode_bytes(raw).map(InferData::Bytes);
    }
    let t = element_type(datatype).ok_or_else(|| format!("datatype {datatype} is not supported"))?;
    TensorData::from_le_bytes(t, raw).map(InferData::Typed).map_err(|e| e.to_string())
}

fn decode_bytes(mut raw: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut items = Vec::new();
    while !raw.is_empty() {
        let (len, rest) = raw.split_at_checked(4).ok_or("a BYTES length is cut short")?;
        let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
        let (item, rest) = rest.split_at_checked(len).ok_or("a BYTES element is cut short")?;
        items.push(item.to_vec());
        raw = rest;
    }
    Ok(items)
}

/// Encodes `data` as raw bytes.
pub fn encode(data: &InferData) -> Vec<u8> {
    match data {
        InferData::Bytes(items) => {
            items.iter().flat_map(|i| (i.len() as u32).to_le_bytes().into_iter().chain(i.iter().copied())).collect()
        }
        InferData::Typed(t) => t.to_le_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips_and_cut_data_is_an_error() {
        let cases = [
            ("FP32", InferData::Typed(TensorData::F32(vec![1.5, -2.0]))),
            ("INT64", InferData::Typed(TensorData::I64(vec![-1, 1 << 40]))),
            ("BOOL", InferData::Typed(TensorData::Bool(vec![true, false]))),
            ("BYTES", InferData::Bytes(vec![b"ab".to_vec(), Vec::new(), "é".as_bytes().to_vec()])),
        ];
        for (datatype, data) in cases {
            assert_eq!(decode(&encode(&data), datatype).unwrap(), data, "{datatype}");
        }
        assert!(decode(&[1, 2, 3], "FP32").unwrap_err().contains("whole number"));
        assert!(decode(&[0, 60], "FP16").is_ok(), "FP16 is a type of its own");
        assert!(decode(&[5, 0, 0, 0, b'a'], "BYTES").unwrap_err().contains("cut short"));
        assert!(decode(&[], "FP8").is_err());
    }

    /// Property: damaged raw tensors (they come straight from clients) decode to some data or an error,
    /// never a panic, in every datatype.
    #[test]
    fn damaged_tensors_never_panic() {
        let bytes = encode(&InferData::Bytes(vec![b"first".to_vec(), b"second element".to_vec()]));
        for raw in crate::damage::damaged(&bytes, 4000, 3) {
            if let Ok(InferData::Bytes(items)) = decode(&raw, "BYTES") {
                assert!(items.iter().map(|i| i.len() + 4).sum::<usize>() == raw.len());
            }
        }
        let floats = encode(&InferData::Typed(TensorData::F64(vec![1.0, -2.0, 3.5])));
        for datatype in
            ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]
        {
            for raw in crate::damage::damaged(&floats, 400, 4) {
                let _ = decode(&raw, datatype);
            }
        }
    }
}
