//! Multiply-adds per second of each kernel family on the linear layers of a 135M Llama (SmolLM2), with 8-bit
//! weights (quantized from floats) and 4-bit weights (GGML Q4_1 blocks), at a prefill of 512 rows and decodes of
//! 1, 4 and 16 rows: `cargo run --release -p ferroserve-kernels --example throughput [threads]`.

use std::time::Instant;

use ferroserve_kernels::{Isa, PackedWeights, QuantizedRows, matmul};

fn main() {
    let threads = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    // (n, k) of q, k, v, o, gate, up, down.
    let layer = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)];
    for (&isa, four) in Isa::available().iter().flat_map(|isa| [(isa, false), (isa, true)]) {
        let weights: Vec<PackedWeights> = layer.iter().map(|&(n, k)| pack(n, k, isa, four)).collect();
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
                "{:12} {} rows {m:4}: {:7.1} GMAC/s, {:8.1} µs per layer",
                isa.name(),
                if four { "4-bit" } else { "8-bit" },
                (macs * reps) as f64 / secs / 1e9,
                secs / reps as f64 * 1e6
            );
        }
    }
}

/// An `n × k` layer: 8-bit weights quantized from floats, or 4-bit Q4_1 blocks (20 bytes per 32 weights: an
/// `f16` scale, an `f16` minimum, 16 nibble bytes) filled with a fixed pattern.
fn pack(n: usize, k: usize, isa: Isa, four: bool) -> PackedWeights {
    if !four {
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
        return PackedWeights::quantize(&w, n, k, isa).expect("pack");
    }
    let blocks = n * k / 32;
    let mut data = Vec::with_capacity(blocks * 20);
    for b in 0..blocks {
        data.extend_from_slice(&half::f16::from_f32(0.01 + (b % 7) as f32 * 0.001).to_le_bytes());
        data.extend_from_slice(&half::f16::from_f32(-0.08).to_le_bytes());
        data.extend((0..16).map(|i| ((b * 31 + i * 7919) % 256) as u8));
    }
    PackedWeights::from_q4_1(&data, n, k, isa).expect("pack")
}
