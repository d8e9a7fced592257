//! The ONNX Runtime backend on models it did not write: the ONNX project's "light" test models (fetched by
//! deploy/fetch-assets.sh) must reproduce their published outputs through the generic tensor path; and a
//! hand-built Optimum-style encoder graph must pool through the embedding path, in passes grouped by length.

use std::path::PathBuf;

use ferroserve_models::Embedder;
use ferroserve_models::Pooling;
use ferroserve_models::export::table_encoder;
use ferroserve_models::onnx::proto::TensorProto;
use ferroserve_models::onnx::{ElementType, NamedTensor, OnnxEmbedder, OnnxModel, TensorData};
use prost::Message;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The float values of a serialized TensorProto (float_data or little-endian raw_data).
fn floats(tensor: &TensorProto) -> Vec<f32> {
    if tensor.float_data.is_empty() {
        let raw = tensor.raw_data.as_deref().unwrap_or_default();
        raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        tensor.float_data.clone()
    }
}

#[test]
fn third_party_light_models_match_their_expected_outputs() {
    let dir = repo_root().join("assets/onnx-light");
    assert!(dir.exists(), "{} is missing: run deploy/fetch-assets.sh (make test does)", dir.display());
    // Names and relative tolerances as the ONNX backend test suite uses them (absolute 1e-7).
    let models = [
        ("bvlc_alexnet", 1e-3),
        ("densenet121", 2e-3),
        ("inception_v1", 1e-3),
        ("inception_v2", 1e-3),
        ("resnet50", 1e-3),
        ("shufflenet", 1e-3),
        ("squeezenet", 1e-3),
        ("vgg19", 1e-3),
        ("zfnet512", 1e-3),
    ];
    for (name, rtol) in models {
        let mut model = OnnxModel::load(&dir.join(format!("light_{name}.onnx")), 2, 0).unwrap();
        assert_eq!(model.inputs().len(), 1, "{name}");
        let spec = model.inputs()[0].clone();
        assert_eq!(spec.element_type, Some(ElementType::F32), "{name}");
        // The suite's input: arange(n) / n, float32, dynamic dimensions taken as 1.
        let shape: Vec<i64> = spec.shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect();
        let n: i64 = shape.iter().product();
        let input = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
        let outputs =
            model.run(vec![NamedTensor { name: spec.name.clone(), shape, data: TensorData::F32(input) }]).unwrap();

        let bytes = std::fs::read(dir.join(format!("light_{name}_output_0.pb"))).unwrap();
        let expected = TensorProto::decode(bytes.as_slice()).unwrap();
        let TensorData::F32(got) = &outputs[0].data else { panic!("{name}: float output expected") };
        assert_eq!(outputs[0].shape, expected.dims, "{name}");
        let want = floats(&expected);
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-7 + rtol * w.abs(), "{name}[{i}]: {g} vs {w}");
        }
    }
}

#[test]
fn generic_path_refuses_bad_inputs_clearly() {
    let dir = repo_root().join("assets/onnx-light");
    let mut model = OnnxModel::load(&dir.join("light_squeezenet.onnx"), 1, 0).unwrap();
    let name = model.inputs()[0].name.clone();
    let err = model.run(vec![]).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    let wrong_type =
        NamedTensor { name: name.clone(), shape: vec![1, 3, 224, 224], data: TensorData::I64(vec![0; 150_528]) };
    let err = model.run(vec![wrong_type]).unwrap_err().to_string();
    assert!(err.contains("must be"), "{err}");
    let wrong_shape = NamedTensor { name: name.clone(), shape: vec![1, 3, 2, 2], data: TensorData::F32(vec![0.0; 12]) };
    let err = model.run(vec![wrong_shape]).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
    let short = NamedTensor { name, shape: vec![1, 3, 224, 224], data: TensorData::F32(vec![0.0; 10]) };
    assert!(model.run(vec![short]).unwrap_err().to_string().contains("does not hold"));
    let missing = OnnxModel::load(&dir.join("no-such.onnx"), 1, 0).err().unwrap().to_string();
    assert!(missing.contains("no-such.onnx"), "{missing}");
    let corrupt = std::env::temp_dir().join(format!("ferroserve-corrupt-{}.onnx", std::process::id()));
    std::fs::write(&corrupt, b"not an onnx model").unwrap();
    let err = OnnxModel::load(&corrupt, 1, 0).err().unwrap().to_string();
    assert!(err.contains("ferroserve-corrupt"), "{err}");
}

#[test]
fn embedding_path_pools_an_optimum_style_graph() {
    let (vocab, hidden) = (10usize, 4usize);
    let table: Vec<f32> = (0..vocab * hidden).map(|i| i as f32 * 0.5 - 3.0).collect();
    let path = std::env::temp_dir().join(format!("ferroserve-tiny-encoder-{}.onnx", std::process::id()));
    std::fs::write(&path, table_encoder(&table, vocab, hidden).encode_to_vec()).unwrap();
    let mut embedder = OnnxEmbedder::load(&path, Pooling::Mean, 0, 1, 0).unwrap();
    let (a, b): (&[u32], &[u32]) = (&[1, 5, 9], &[2, 3]);
    let out = embedder.embed(&[a, b]).unwrap();
    let mean = |ids: &[u32]| -> Vec<f32> {
        (0..hidden)
            .map(|h| ids.iter().map(|&t| table[t as usize * hidden + h]).sum::<f32>() / ids.len() as f32)
            .collect()
    };
    assert_eq!(out, vec![mean(a), mean(b)], "mean over real tokens only; padding of the shorter one ignored");

    // Lengths far apart run as two passes, each padded to its own longest (embedder::length_groups); the
    // vectors still come back in the batch's order.
    let long = |n: usize, t: u32| -> Vec<u32> { (0..n).map(|i| (i as u32 * t) % vocab as u32).collect() };
    let (c, d) = (long(40, 3), long(41, 7));
    let mixed: Vec<&[u32]> = vec![&c, a, &d, b];
    let out = embedder.embed(&mixed).unwrap();
    let want: Vec<Vec<f32>> = mixed.iter().map(|s| mean(s)).collect();
    for (got, want) in out.iter().zip(&want) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-5, "{got:?} vs {want:?}");
        }
    }

    let mut cls = OnnxEmbedder::load(&path, Pooling::Cls, 0, 1, 0).unwrap();
    assert_eq!(cls.embed(&[b]).unwrap()[0], table[2 * hidden..3 * hidden].to_vec());
    std::fs::remove_file(&path).unwrap();
}
