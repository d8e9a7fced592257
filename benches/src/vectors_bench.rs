//! Vector search benchmark: ferroserve's collections (its own HNSW, exact rescoring) on real MiniLM vectors
//! of Debian package descriptions, and the files `benches/hnswlib_bench.py` reads to run hnswlib on the same
//! vectors with the same M and ef_construction (benches/vectors.sh runs both and writes the table).
//!
//! Writes into `--out`: `vectors.f32` (u32 count, u32 dim, then f32 rows: the points, then the queries),
//! `truth.json` (exact top-k of each query), `ferroserve.json` (build time; recall@k and queries/s per ef;
//! recall of filtered searches keeping 1% and 50% of the points).
//!
//! cargo run --release -p ferroserve-bench --bin vectors-bench -- --texts target/bench-data/descriptions.txt

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use ferroserve::vectors::{
    Collection, CollectionConfig, Distance, Filter, HnswParams, PointId, PointInput, QuantizationSearch,
    ScalarQuantization, Search,
};
use ferroserve_models::pooling::l2_normalize;
use ferroserve_models::{DeviceSpec, EmbedderInfo, ModelConfig, load_embedder};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// One text per line: the first `--points` are indexed, the next `--queries` are queries.
    #[arg(long)]
    texts: PathBuf,
    #[arg(long, default_value_t = 20_000)]
    points: usize,
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// The embedding model's repository file.
    #[arg(long, default_value = "deploy/model-repository/all-MiniLM-L6-v2-onnx.toml")]
    model: PathBuf,
    #[arg(long, default_value_t = 16)]
    m: usize,
    #[arg(long, default_value_t = 100)]
    ef_construct: usize,
    #[arg(long, value_delimiter = ',', default_value = "10,16,32,64,128,256")]
    ef: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long, default_value = "target/bench-data")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let vectors_file = args.out.join("vectors.f32");
    let total = args.points + args.queries;
    let vectors = match read_vectors(&vectors_file).filter(|v| v.len() == total) {
        Some(v) => v,
        None => {
            let v = embed(&args, total)?;
            write_vectors(&vectors_file, &v)?;
            v
        }
    };
    let (points, queries) = vectors.split_at(args.points);
    let dim = points[0].len();
    let config = CollectionConfig {
        size: dim,
        distance: Distance::Cosine,
        hnsw: HnswParams { m: args.m, ef_construct: args.ef_construct, full_scan_threshold: 2000 },
        embedding_model: None,
        quantization: None,
        on_disk: false,
    };
    let (collection, build_secs) = build(Collection::new("bench", config.clone()), points)?;
    eprintln!("built {} points in {build_secs:.1} s", points.len());
    let truth: Vec<Vec<PointId>> =
        queries.iter().map(|q| search(&collection, &args, q, 0, None, true, None)).collect::<Result<_, _>>()?;
    let plain = sweep(&collection, &args, queries, &truth, None)?;
    let mut filtered = Vec::new();
    for (share, raw) in [
        ("1%", json!({"must": [{"key": "bucket", "match": {"value": 7}}]})),
        ("50%", json!({"must": [{"key": "bucket", "range": {"lt": 50}}]})),
    ] {
        let filter = Filter::parse(&raw).map_err(anyhow::Error::msg)?;
        let exact: Vec<Vec<PointId>> = queries
            .iter()
            .map(|q| search(&collection, &args, q, 0, filter.clone(), true, None))
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        let found: Vec<Vec<PointId>> = queries
            .iter()
            .map(|q| search(&collection, &args, q, 64, filter.clone(), false, None))
            .collect::<Result<_, _>>()?;
        let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
        let r = recall(&found, &exact);
        eprintln!("filter keeping {share}: recall@{} {r:.4} at ef 64, {qps:.0} queries/s", args.k);
        filtered.push(json!({"keeps": share, "recall": r, "qps": qps, "ef": 64}));
    }
    let counts = collection.counts();
    let mut variants = vec![json!({
        "name": "f32, vectors in memory", "build_secs": build_secs, "memory_bytes": counts.bytes,
        "graph_bytes": counts.graph_bytes, "disk_bytes": counts.disk_bytes, "sweep": plain,
    })];
    drop(collection);
    // INT8 codes in the graph, full-precision vectors on disk (Qdrant's quantization with on_disk vectors).
    let folder = args.out.join("quantized-collection");
    std::fs::create_dir_all(&folder)?;
    let quantized = CollectionConfig { quantization: Some(ScalarQuantization::default()), on_disk: true, ..config };
    let (collection, build_secs) = build(Collection::in_folder("bench-int8", quantized, &folder)?, points)?;
    eprintln!("built the INT8 collection in {build_secs:.1} s");
    let counts = collection.counts();
    for (name, rescore, oversampling) in [
        ("int8, vectors on disk, rescore", true, 1.0),
        ("int8, vectors on disk, rescore, oversampling 2", true, 2.0),
        ("int8, no rescore", false, 1.0),
    ] {
        let q = QuantizationSearch { ignore: false, rescore, oversampling };
        eprintln!("{name}:");
        let found = sweep(&collection, &args, queries, &truth, Some(q))?;
        variants.push(json!({
            "name": name, "build_secs": build_secs, "memory_bytes": counts.bytes,
            "graph_bytes": counts.graph_bytes, "disk_bytes": counts.disk_bytes, "sweep": found,
        }));
    }
    drop(collection);
    std::fs::remove_dir_all(&folder)?;
    let sweep = variants[0]["sweep"].clone();
    let ids = |rows: &[Vec<PointId>]| -> Vec<Vec<u64>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .filter_map(|id| match id {
                        PointId::Num(n) => Some(*n),
                        PointId::Uuid(_) => None,
                    })
                    .collect()
            })
            .collect()
    };
    std::fs::write(args.out.join("truth.json"), serde_json::to_vec(&json!({"k": args.k, "ids": ids(&truth)}))?)?;
    let result = json!({
        "points": points.len(), "queries": queries.len(), "dim": dim, "m": args.m, "ef_construct": args.ef_construct,
        "build_secs": variants[0]["build_secs"], "sweep": sweep, "filtered": filtered, "variants": variants,
        "machine": ferroserve_bench::machine::describe(), "date": ferroserve::utc::today(),
    });
    std::fs::write(args.out.join("ferroserve.json"), serde_json::to_vec_pretty(&result)?)?;
    Ok(())
}

/// Upserts `points` (payload `bucket`: the id mod 100) in batches of 1,000; returns the build time.
fn build(collection: Collection, points: &[Vec<f32>]) -> anyhow::Result<(Collection, f64)> {
    let started = Instant::now();
    for (chunk_no, chunk) in points.chunks(1000).enumerate() {
        let inputs = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let n = chunk_no * 1000 + i;
                let payload = json!({"bucket": n % 100}).as_object().cloned().unwrap_or_default();
                PointInput { id: PointId::Num(n as u64), vector: v.clone(), payload }
            })
            .collect();
        collection.upsert(inputs)?;
    }
    // Wait for a background rebuild (a quantized graph refits as it grows) to finish.
    while collection.is_rebuilding() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok((collection, started.elapsed().as_secs_f64()))
}

fn search(
    collection: &Collection,
    args: &Args,
    q: &[f32],
    ef: usize,
    filter: Option<Filter>,
    exact: bool,
    quantization: Option<QuantizationSearch>,
) -> anyhow::Result<Vec<PointId>> {
    let s = Search {
        vector: q.to_vec(),
        limit: args.k,
        offset: 0,
        filter,
        score_threshold: None,
        ef: Some(ef),
        exact,
        quantization: quantization.unwrap_or_default(),
        with_payload: false,
        with_vector: false,
    };
    Ok(collection.search(&s)?.into_iter().map(|h| h.record.id).collect())
}

fn recall(found: &[Vec<PointId>], truth: &[Vec<PointId>]) -> f64 {
    let hit: usize = found.iter().zip(truth).map(|(f, t)| f.iter().filter(|id| t.contains(id)).count()).sum();
    hit as f64 / truth.iter().map(Vec::len).sum::<usize>().max(1) as f64
}

/// Recall@k and queries/s (best of three passes: this machine's timings swing between runs) per ef.
fn sweep(
    collection: &Collection,
    args: &Args,
    queries: &[Vec<f32>],
    truth: &[Vec<PointId>],
    quantization: Option<QuantizationSearch>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for &ef in &args.ef {
        let mut qps: f64 = 0.0;
        let mut found: Vec<Vec<PointId>> = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            found = queries
                .iter()
                .map(|q| search(collection, args, q, ef, None, false, quantization))
                .collect::<Result<_, _>>()?;
            qps = qps.max(queries.len() as f64 / started.elapsed().as_secs_f64());
        }
        let r = recall(&found, truth);
        eprintln!("ef {ef}: recall@{} {r:.4}, {qps:.0} queries/s", args.k);
        out.push(json!({"ef": ef, "recall": r, "qps": qps}));
    }
    Ok(out)
}

/// Embeds the first `n` lines of `--texts` with the model, normalized, in batches.
fn embed(args: &Args, n: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let text = std::fs::read_to_string(&args.texts).with_context(|| format!("reading {}", args.texts.display()))?;
    let texts: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).take(n).map(String::from).collect();
    anyhow::ensure!(texts.len() == n, "{} has {} texts; {n} are needed", args.texts.display(), texts.len());
    let config = ModelConfig::from_file(&args.model)?;
    let info = EmbedderInfo::load(&config)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut model = load_embedder(&config, &info, &DeviceSpec::Cpu, threads, 0)?;
    let started = Instant::now();
    let mut out = Vec::with_capacity(n);
    for chunk in texts.chunks(64) {
        let ids = info.tokenizer.encode(chunk, true)??;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        for mut v in model.embed(&refs)? {
            l2_normalize(&mut v);
            out.push(v);
        }
    }
    eprintln!("embedded {n} texts in {:.0} s", started.elapsed().as_secs_f64());
    Ok(out)
}

fn read_vectors(path: &Path) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    let n = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let dim = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
    let floats: Vec<f32> =
        bytes.get(8..8 + n * dim * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Some(floats.chunks(dim).map(<[f32]>::to_vec).collect())
}

fn write_vectors(path: &Path, vectors: &[Vec<f32>]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(&(vectors.len() as u32).to_le_bytes())?;
    f.write_all(&(vectors[0].len() as u32).to_le_bytes())?;
    for v in vectors {
        for x in v {
            f.write_all(&x.to_le_bytes())?;
        }
    }
    Ok(())
}
