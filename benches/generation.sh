#!/usr/bin/env bash
# Text generation on this machine, one run, appended to benches/RESULTS.md:
#   1. `ferroserve bench load --api openai-chat` against a release server serving only SmolLM2 (Q8_0, 2 threads):
#      streamed answers of 64 tokens (end-of-generation ignored) at 1, 2, 4, 8 and 16 concurrent streams, every
#      request with the same ~500-token system prompt: aggregate tokens/s, time to first token and inter-token
#      latency; then one stream with prefix reuse off (the TTFT baseline: the system prompt prefilled every
#      time), and 16 streams with max_num_seqs 1 (the serial baseline), in the same run;
#   2. `ferroserve bench variants`: the Q8_0 default and F32, F16 and Q4_1 conversions at load, in process:
#      prefill and decode tokens/s at 1 and 4 sequences, greedy token agreement with F32 over 20 prompts,
#      perplexity; its table, JSON, CSV and plots go to target/bench-generation.
# Usage: benches/generation.sh   (after `cargo build --release --bin ferroserve`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
repo=$(mktemp -d)
gguf=$(realpath assets/SmolLM2-135M-Instruct)
seconds=${SECONDS_PER_LEVEL:-20}

source benches/lib.sh

serve() { # prefix_cache_mb max_num_seqs -> starts the server, sets $server
  printf 'name = "SmolLM2-135M-Instruct"\ntask = "generation"\nbackend = "candle"\npath = "%s"\nweights = "SmolLM2-135M-Instruct.Q4_1.gguf"\ndtype = "q8_0"\n[generation]\nmax_num_seqs = %s\nprefix_cache_mb = %s\n[[lanes]]\ndevice = "cpu"\nthreads = 2\n' \
    "$gguf" "$2" "$1" > "$repo/smollm2.toml"
  start_server /tmp/ferroserve-generation-bench.log --model-repository "$repo"
}
# A system prompt of ~500 tokens, the same in every request: the first 60 package descriptions.
system="You answer questions about Debian packages. Known packages: $(head -n 60 tests/data/sentences.txt | tr '\n' ' ')"
chat() { # concurrency note
  "$bin" bench load --url "$BENCH_URL" --api openai-chat --model SmolLM2-135M-Instruct --concurrency "$1" \
    --duration "$seconds" --warmup 2 --max-tokens 64 --ignore-eos --system "$system" --server-pid "$server" \
    --out "target/bench-generation/load-$1" --results benches/RESULTS.md --note "$2"
}

serve 256 16
chat 1,2,4,8,16 "Q8_0, 2 threads, prefix cache on (the system prompt prefilled once)"
stop_server
# Baselines: prefix reuse off (TTFT), and continuous batching off (one sequence at a time: serial).
serve 0 16
chat 1 "Q8_0, 2 threads, prefix cache off (the system prompt prefilled for every request)"
stop_server
serve 256 1
chat 16 "Q8_0, 2 threads, max_num_seqs 1 (no batching)"
stop_server
"$bin" bench variants --model SmolLM2-135M-Instruct --model-repository "$repo" --dtypes f32,f16,q4_1 --limit 20 \
  --max-tokens 32 --threads 2 --min-agreement 0.9 --out target/bench-generation/variants | tee /tmp/ferroserve-llm-variants.txt
{ echo; echo "$(date -u +%F), $(machine): SmolLM2-135M-Instruct variants in process (\`ferroserve bench variants\`, 20 prompts, 32 tokens, 2 threads)"
  echo; grep '^|' /tmp/ferroserve-llm-variants.txt; } >> benches/RESULTS.md
