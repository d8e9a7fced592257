//! The machine and date every results row records: `ferroserve bench` and the load generators in benches/
//! (benches/lib.sh does the same for the shell scripts).

/// CPU flags that decide which kernels run (ONNX Runtime, llama.cpp, Candle's gemm).
const SIMD: [&str; 13] = [
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
];

/// The SIMD flags of this CPU among [`SIMD`], as `flags: a b c`.
pub fn simd_flags() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().filter(|f| SIMD.contains(f)).collect())
        .unwrap_or_default();
    format!("flags: {}", if flags.is_empty() { "none".to_string() } else { flags.join(" ") })
}

/// CPU model, cores, memory, the SIMD features that decide kernel speed, and the GPU when there is one:
/// what every results row records beside its numbers.
pub fn describe() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let gpu = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .filter(|name| !name.is_empty())
        .map(|name| format!(", GPU {name}"))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem_gib:.0} GiB, {}{gpu}", simd_flags())
}
