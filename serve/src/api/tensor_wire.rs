//! The Open Inference Protocol's raw tensor encoding, shared by REST's binary tensor extension and gRPC's
//! `raw_input_contents` / `raw_output_contents`: values little-endian and packed; BYTES elements each as a
//! 4-byte little-endian length, then the bytes. Errors say what is wrong, for the caller to name the tensor.

use ferroserve_models::onnx::TensorData;

use crate::engine::InferData;

/// Decodes `raw` as `datatype`.
pub fn decode(raw: &[u8], datatype: &str) -> Result<InferData, String> {
    fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        raw.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
    }
    let width = match datatype {
        "BYTES" => return decode_bytes(raw).map(InferData::Bytes),
        "FP32" | "INT32" => 4,
        "FP64" | "INT64" => 8,
        "UINT8" | "BOOL" => 1,
        other => return Err(format!("datatype {other} is not supported here")),
    };
    if !raw.len().is_multiple_of(width) {
        return Err(format!("{} bytes is not a whole number of {datatype} values", raw.len()));
    }
    Ok(InferData::Typed(match datatype {
        "FP32" => TensorData::F32(chunks(raw, f32::from_le_bytes)),
        "INT32" => TensorData::I32(chunks(raw, i32::from_le_bytes)),
        "FP64" => TensorData::F64(chunks(raw, f64::from_le_bytes)),
        "INT64" => TensorData::I64(chunks(raw, i64::from_le_bytes)),
        "UINT8" => TensorData::U8(raw.to_vec()),
        _ => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
    }))
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
        InferData::Typed(t) => match t {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
        },
    }
}

/// The element count a shape holds; `None` for a negative or overflowing shape.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)))
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
        assert!(decode(&[5, 0, 0, 0, b'a'], "BYTES").unwrap_err().contains("cut short"));
        assert!(decode(&[], "FP16").is_err());
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[-1, 3]), None);
    }
}
