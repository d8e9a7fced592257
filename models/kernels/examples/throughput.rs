//! Multiply-adds per second of each kernel family on the linear layers of a 135M Llama (SmolLM2), at a
//! prefill of 512 rows and decodes of 1, 4 and 16 rows: `cargo run --release -p ferroserve-kernels
//! --example throughput [threads]`.

use std::time::Instant;

use ferroserve_kernels::{Isa, PackedWeights, QuantizedRows, matmul};

fn main() {
    let threads = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    // (n, k) of q, k, v, o, gate, up, down.
    let layer = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)];
    for &isa in Isa::available() {
        let weights: Vec<PackedWeights> = layer
            .iter()
            .map(|&(n, k)| {
                let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
                PackedWeights::quantize(&w, n, k, isa).expect("pack")
            })
            .collect();
        for m in [512usize, 1, 4, 16] {
            let mut rows = QuantizedRows::new();
            let mut out = Vec::new();
            let macs: usize = layer.iter().map(|&(n, k)| m * n * k).sum();
            let reps = (2_000_000_000 / macs).clamp(3, 2000);
            // The layers' inputs, made before the clock starts (quantizing them is timed, as the engine does it).
            let inputs: Vec<Vec<f32>> = layer.iter().map(|&(_, k)| vec![0.25; m * k]).collect();
            let started = Instant::now();
            pool.install(|| {
                for _ in 0..reps {
                    for ((w, &(n, k)), x) in weights.iter().zip(&layer).zip(&inputs) {
                        rows.quantize(x, m, k, isa).expect("rows");
                        out.resize(m * n, 0.0);
                        matmul(w, &rows, &mut out).expect("matmul");
                    }
                }
            });
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{:12} rows {m:4}: {:7.1} GMAC/s, {:8.1} µs per layer",
                isa.name(),
                (macs * reps) as f64 / secs / 1e9,
                secs / reps as f64 * 1e6
            );
        }
    }
}
