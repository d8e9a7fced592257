#!/usr/bin/env bash
# Text generation on this machine, one run, appended to benches/RESULTS.md:
#   1. genbench against a release server serving only SmolLM2 (Q8_0, 2 threads): decode tokens/s of one
#      stream, aggregate tokens/s at 2, 4, 8, 16 streams (64 tokens each, end-of-generation ignored), prompt
#      tokens/s, time to first token cold versus with a cached ~500-token prefix; then the same with prefix
#      reuse off (TTFT baseline), and 16 streams with max_num_seqs 1 (serial baseline), in the same run;
#   2. llm-variants: F32, F16, Q8_0 and Q4_1 speed and greedy agreement with F32 over 20 prompts.
# Usage: benches/generation.sh   (after `cargo build --release --bin ferroserve --bin genbench --bin llm-variants`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
repo=$(mktemp -d)
gguf=$(realpath assets/SmolLM2-135M-Instruct)

source benches/lib.sh

serve() { # prefix_cache_mb max_num_seqs -> starts the server, sets $server
  printf 'name = "SmolLM2-135M-Instruct"\ntask = "generation"\nbackend = "candle"\npath = "%s"\nweights = "SmolLM2-135M-Instruct.Q4_1.gguf"\ndtype = "q8_0"\n[generation]\nmax_num_seqs = %s\nprefix_cache_mb = %s\n[[lanes]]\ndevice = "cpu"\nthreads = 2\n' \
    "$gguf" "$2" "$1" > "$repo/smollm2.toml"
  start_server /tmp/ferroserve-genbench.log --model-repository "$repo"
}

serve 256 16
target/release/genbench --http "$BENCH_URL" --streams 1,2,4,8,16 --max-tokens 64 --note "Q8_0, 2 threads, prefix cache on"
stop_server
# Baselines: prefix reuse off (TTFT), and continuous batching off (one sequence at a time: serial).
serve 0 16
target/release/genbench --http "$BENCH_URL" --streams 1 --max-tokens 64 --note "Q8_0, 2 threads, prefix cache off"
stop_server
serve 256 1
target/release/genbench --http "$BENCH_URL" --streams 16 --max-tokens 64 --note "Q8_0, 2 threads, max_num_seqs 1 (no batching)"
stop_server
target/release/llm-variants --prompts 20 --max-tokens 32 --threads 2
