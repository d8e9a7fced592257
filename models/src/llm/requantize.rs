//! Offline re-quantization of GGUF files (`ferroserve quantize --to q8_0|q4_0|q4_k`): every weight matrix is
//! dequantized and quantized again in the target format, so a variant is a file to compare and serve, not only
//! a load-time conversion. The metadata (hyper-parameters, tokenizer, chat template) is kept, with
//! `general.file_type` set to the target. One-dimensional tensors (norms) stay as they are. A matrix whose rows
//! do not split into the target's blocks (Q4_K packs 256 values per block; SmolLM2's rows hold 576) falls back
//! to Q5_0 (32-value blocks), as llama.cpp's quantizer does for such rows; the report lists them.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};

use super::read_gguf_content;
use crate::error::ModelError;

/// What a re-quantization did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequantizeReport {
    pub tensors: usize,
    /// Matrices written in the target format.
    pub requantized: usize,
    /// Matrices whose rows do not split into the target's blocks: written as Q5_0 (or kept, if not even
    /// that fits).
    pub fallback: Vec<String>,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The formats a GGUF file can be re-quantized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufTarget {
    Q8_0,
    Q4_0,
    Q4K,
}

impl GgufTarget {
    fn dtype(self) -> GgmlDType {
        match self {
            GgufTarget::Q8_0 => GgmlDType::Q8_0,
            GgufTarget::Q4_0 => GgmlDType::Q4_0,
            GgufTarget::Q4K => GgmlDType::Q4K,
        }
    }

    /// As llama.cpp writes it: `Q8_0`, `Q4_0`, `Q4_K`.
    pub fn name(self) -> &'static str {
        match self {
            GgufTarget::Q8_0 => "Q8_0",
            GgufTarget::Q4_0 => "Q4_0",
            GgufTarget::Q4K => "Q4_K",
        }
    }

    /// llama.cpp's `general.file_type` (`MOSTLY_Q8_0`, `MOSTLY_Q4_0`, `MOSTLY_Q4_K_S`).
    fn file_type(self) -> u32 {
        match self {
            GgufTarget::Q8_0 => 7,
            GgufTarget::Q4_0 => 2,
            GgufTarget::Q4K => 14,
        }
    }
}

/// Writes `input` re-quantized to `target` as `output` (through a temporary file, so a failure leaves no
/// half-written model). `progress(done, total)` after each tensor.
pub fn requantize_gguf(
    input: &Path,
    output: &Path,
    to: GgufTarget,
    mut progress: impl FnMut(usize, usize),
) -> Result<RequantizeReport, ModelError> {
    let target = to.dtype();
    let file = File::open(input).map_err(|e| ModelError::io(input, e))?;
    let bytes_before = file.metadata().map_err(|e| ModelError::io(input, e))?.len();
    let mut reader = BufReader::new(file);
    let content = read_gguf_content(&mut reader, bytes_before)
        .map_err(|e| ModelError::config(input, format!("not a readable GGUF file: {e}")))?;
    // In the file's order.
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|name| content.tensor_infos[*name].offset);
    let mut report = RequantizeReport { tensors: names.len(), bytes_before, ..Default::default() };
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let tensor = content.tensor(&mut reader, name, &Device::Cpu)?;
        let row = tensor.shape().dims().last().copied().unwrap_or(0);
        let dtype = if tensor.shape().dims().len() < 2 {
            None
        } else if row % target.block_size() == 0 {
            Some(target)
        } else {
            report.fallback.push(name.to_string());
            (row % GgmlDType::Q5_0.block_size() == 0).then_some(GgmlDType::Q5_0)
        };
        let tensor = match dtype {
            Some(dtype) if dtype != tensor.dtype() => {
                report.requantized += usize::from(dtype == target);
                QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, dtype)?
            }
            Some(dtype) => {
                report.requantized += usize::from(dtype == target);
                tensor
            }
            None => tensor,
        };
        tensors.push((name.as_str(), tensor));
        progress(i + 1, names.len());
    }
    let file_type = gguf_file::Value::U32(to.file_type());
    let mut keys: Vec<&String> = content.metadata.keys().collect();
    keys.sort();
    let metadata: Vec<(&str, &gguf_file::Value)> = keys
        .into_iter()
        .map(|k| (k.as_str(), if k == "general.file_type" { &file_type } else { &content.metadata[k] }))
        .chain((!content.metadata.contains_key("general.file_type")).then_some(("general.file_type", &file_type)))
        .collect();
    let partial = output.with_extension("gguf.partial");
    let mut writer = BufWriter::new(File::create(&partial).map_err(|e| ModelError::io(&partial, e))?);
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(name, t)| (*name, t)).collect();
    gguf_file::write(&mut writer, &metadata, &tensors)?;
    let file = writer.into_inner().map_err(|e| ModelError::io(&partial, e.into_error()))?;
    file.sync_all().map_err(|e| ModelError::io(&partial, e))?;
    std::fs::rename(&partial, output).map_err(|e| ModelError::io(output, e))?;
    report.bytes_after = std::fs::metadata(output).map_err(|e| ModelError::io(output, e))?.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::Tensor;

    use super::*;

    /// A small GGUF file: a 4x256 matrix (fits Q4_K's blocks), a 4x64 one (does not), a norm vector, and
    /// metadata.
    fn write_sample(path: &Path) -> Vec<Vec<f32>> {
        let values = |rows: usize, cols: usize, seed: f32| -> Vec<f32> {
            (0..rows * cols).map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.5).collect()
        };
        let wide = values(4, 256, 0.1);
        let narrow = values(4, 64, 0.7);
        let norm = values(1, 64, 0.3);
        let q = |v: &[f32], shape: &[usize]| {
            QTensor::quantize(&Tensor::from_slice(v, shape, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
        };
        let tensors = [("wide", q(&wide, &[4, 256])), ("narrow", q(&narrow, &[4, 64])), ("norm", q(&norm, &[64]))];
        let arch = gguf_file::Value::String("llama".into());
        let metadata = [("general.architecture", &arch)];
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        let mut file = File::create(path).unwrap();
        gguf_file::write(&mut file, &metadata, &refs).unwrap();
        vec![wide, narrow, norm]
    }

    fn read_back(path: &Path) -> (gguf_file::Content, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        let content = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
        (content, bytes)
    }

    #[test]
    fn matrices_change_format_norms_stay_and_metadata_is_kept() {
        let dir = std::env::temp_dir().join(format!("requantize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.gguf");
        let original = write_sample(&input);
        for (to, wide_error) in [(GgufTarget::Q8_0, 0.01), (GgufTarget::Q4_0, 0.1), (GgufTarget::Q4K, 0.1)] {
            let target = to.dtype();
            let output = dir.join(format!("{}.gguf", to.name()));
            let report = requantize_gguf(&input, &output, to, |_, _| {}).unwrap();
            let (content, bytes) = read_back(&output);
            let dtype = |name: &str| content.tensor_infos[name].ggml_dtype;
            assert_eq!(dtype("wide"), target);
            assert_eq!(dtype("norm"), GgmlDType::F32, "one-dimensional tensors are kept");
            // Q4_K's 256-value blocks do not fit 64-value rows: Q5_0 instead, and reported.
            let narrow = if target == GgmlDType::Q4K { GgmlDType::Q5_0 } else { target };
            assert_eq!(dtype("narrow"), narrow);
            assert_eq!(report.fallback, if target == GgmlDType::Q4K { vec!["narrow".to_string()] } else { vec![] });
            assert_eq!((report.tensors, report.requantized), (3, if target == GgmlDType::Q4K { 1 } else { 2 }));
            assert_eq!(report.bytes_after, bytes.len() as u64);
            assert!(report.bytes_after < report.bytes_before);
            let general = |k: &str| content.metadata.get(k).cloned();
            assert_eq!(general("general.architecture").unwrap().to_string().unwrap(), "llama");
            assert_eq!(general("general.file_type").unwrap().to_u32().unwrap(), to.file_type());
            // Values within the format's error of the original.
            let mut reader = Cursor::new(&bytes);
            for (name, values, bound) in [("wide", &original[0], wide_error), ("norm", &original[2], 0.0)] {
                let back = content.tensor(&mut reader, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
                let back: Vec<f32> = back.flatten_all().unwrap().to_vec1().unwrap();
                let worst = values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(worst <= bound as f32, "{target:?} {name}: worst error {worst}");
            }
        }
        let refused = requantize_gguf(&dir.join("missing.gguf"), &dir.join("x.gguf"), GgufTarget::Q8_0, |_, _| {});
        assert!(refused.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
