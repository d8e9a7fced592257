//! `bench variants` end to end on a tiny generated model: an ONNX encoder whose vector for a text is the mean
//! of its tokens' rows in a table, in two variants (the table, and the table rounded to one decimal), so the
//! drift the benchmark reports can be computed by hand from the tables; and the files it writes hold every
//! field, with valid PNG and SVG plots.

use std::path::Path;

use ferroserve_models::config::DeviceSpec;
use ferroserve_models::export::table_encoder;
use prost::Message;

use super::{VariantsArgs, variants};

const WORDS: [&str; 8] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
const HIDDEN: usize = 4;

/// A model folder: the encoder, a word-level tokenizer over `WORDS` (ids 1..), and the config.
fn model_folder(dir: &Path, table: &[f32]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.onnx"), table_encoder(table, WORDS.len() + 1, HIDDEN).encode_to_vec()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = std::iter::once(("[UNK]".to_string(), 0.into()))
        .chain(WORDS.iter().enumerate().map(|(i, w)| (w.to_string(), (i + 1).into())))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"hidden_size": 4, "max_position_embeddings": 64}"#).unwrap();
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt())
}

/// The mean of the rows of a text's words.
fn mean_row(table: &[f32], text: &str) -> Vec<f64> {
    let ids: Vec<usize> = text.split(' ').map(|w| WORDS.iter().position(|x| *x == w).unwrap() + 1).collect();
    (0..HIDDEN).map(|h| ids.iter().map(|&i| f64::from(table[i * HIDDEN + h])).sum::<f64>() / ids.len() as f64).collect()
}

fn check_png(path: &Path) {
    let png = std::fs::read(path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&png[12..16], b"IHDR");
    let size =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!(size, (1100, 600), "{}", path.display());
    assert!(png.len() > 10_000, "{} holds a drawing", path.display());
}

fn check_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.starts_with("<svg width=\"1100\" height=\"600\"") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(svg.contains("tiny:coarse") && svg.contains("<polyline"), "{}", path.display());
}

#[test]
fn variants_of_a_tiny_model_write_every_field_and_plot_with_hand_computed_drift() {
    let root = std::env::temp_dir().join(format!("ferroserve-bench-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let rows = WORDS.len() + 1;
    let table: Vec<f32> = (0..rows * HIDDEN).map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.173).collect();
    let coarse: Vec<f32> = table.iter().map(|x| (x * 10.0).round() / 10.0).collect();
    model_folder(&root.join("fine"), &table);
    model_folder(&root.join("coarse"), &coarse);
    let repository = root.join("repository");
    std::fs::create_dir_all(&repository).unwrap();
    for (name, folder) in [("tiny", "fine"), ("tiny:coarse", "coarse")] {
        let toml = format!("name = \"{name}\"\ntask = \"embedding\"\nbackend = \"onnx\"\npath = \"../{folder}\"\n");
        std::fs::write(repository.join(format!("{}.toml", name.replace(':', "-"))), toml).unwrap();
    }
    let texts: Vec<String> = (0..12)
        .map(|i| (0..1 + i % 4).map(|j| WORDS[(i * 3 + j * 5) % WORDS.len()]).collect::<Vec<_>>().join(" "))
        .collect();
    std::fs::write(root.join("texts.txt"), texts.join("\n")).unwrap();
    let out = root.join("out");
    let args = VariantsArgs {
        model: "tiny".into(),
        repository,
        variants: Vec::new(),
        dtypes: Vec::new(),
        data: root.join("texts.txt"),
        limit: None,
        batches: vec![1, 4],
        max_tokens: 8,
        perplexity_tokens: 16,
        reference: Some("tiny".into()),
        min_cosine: Some(1.0),
        min_agreement: None,
        device: DeviceSpec::Cpu,
        threads: 1,
        out: out.clone(),
    };
    let report = variants(&args).unwrap();
    assert_eq!(report.recommendation.as_deref(), Some("tiny"), "only the reference reaches cosine 1");

    // Hand computation: each text's vector is the mean of its rows; cosines between the two tables' vectors.
    let mut cosines: Vec<f64> = texts.iter().map(|t| cosine(&mean_row(&table, t), &mean_row(&coarse, t))).collect();
    cosines.sort_by(f64::total_cmp);
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
    assert!(cosines[0] < 0.99999, "the rounding moves some vector: {cosines:?}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("variants.json")).unwrap()).unwrap();
    for key in [
        "model",
        "task",
        "unit",
        "reference",
        "inputs",
        "machine",
        "date",
        "variants",
        "bound",
        "recommendation",
        "plots",
    ] {
        assert!(json.get(key).is_some(), "variants.json lacks {key}: {json}");
    }
    assert_eq!(
        (json["task"].as_str(), json["unit"].as_str(), json["inputs"].as_u64()),
        (Some("embedding"), Some("texts"), Some(12))
    );
    let names: Vec<&str> = json["variants"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tiny", "tiny:coarse"], "the reference first");
    for v in json["variants"].as_array().unwrap() {
        for key in
            ["backend", "dtype", "file_bytes", "load_seconds", "rss_loaded_mib", "rss_peak_mib", "speed", "drift"]
        {
            assert!(v.get(key).is_some(), "variant lacks {key}: {v}");
        }
        assert!(v["file_bytes"].as_u64().unwrap() > 100 && v["rss_peak_mib"].as_f64().unwrap() > 0.0);
        let speed = v["speed"].as_array().unwrap();
        assert_eq!(speed.iter().map(|s| s["batch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 4]);
        for s in speed {
            assert!(s["throughput"].as_f64().unwrap() > 0.0);
            let calls = s["latencies_ms"].as_array().unwrap().len();
            assert_eq!(calls, 12usize.div_ceil(s["batch"].as_u64().unwrap() as usize), "one latency per call");
            let p = |k: &str| s[k].as_f64().unwrap();
            assert!(
                0.0 < p("latency_ms_p50")
                    && p("latency_ms_p50") <= p("latency_ms_p90")
                    && p("latency_ms_p90") <= p("latency_ms_p99")
            );
        }
    }
    let drift = &json["variants"][1]["drift"];
    assert!(json["variants"][0]["drift"].is_null());
    let close = |key: &str, want: f64| {
        let got = drift[key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-6, "{key}: reported {got}, computed by hand {want}");
    };
    close("cosine_min", cosines[0]);
    close("cosine_p1", cosines[0]); // nearest rank ceil(0.01 × 12) = 1
    close("cosine_mean", mean);
    assert_eq!(drift["k"].as_u64(), Some(10));
    let overlap = drift["neighbour_overlap"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&overlap));

    let csv = std::fs::read_to_string(out.join("variants.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2, "a header, then a row per variant and batch size");
    let plots: Vec<&str> = json["plots"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let mut expected = Vec::new();
    for chart in ["throughput", "pareto", "latency"] {
        check_png(&out.join(format!("{chart}.png")));
        check_svg(&out.join(format!("{chart}.svg")));
        expected.extend([format!("{chart}.png"), format!("{chart}.svg")]);
    }
    assert_eq!(plots, expected);
    std::fs::remove_dir_all(&root).unwrap();
}
