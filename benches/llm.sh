#!/usr/bin/env bash
# LLM generation on the CPU against llama.cpp, same GGUF file, same machine, same run, same thread count:
# prefill tokens/s of one ~580-token prompt, and aggregate greedy decode tokens/s of 1, 4 and 16 streams
# decoded together (64 tokens each). ferroserve runs in process (`ferroserve bench llm`, the engine the server's
# scheduler drives); llama.cpp through node-llama-cpp's prebuilt CPU binaries (benches/llama-cpp/baseline.mjs,
# the variant its loader picks for this CPU is recorded). Both sides report the best of 3 runs per figure and
# alternate over two rounds; the table keeps each side's best.
#
# Measured: ferroserve's default (the Q4_1 file re-quantized to Q8_0 at load, its own kernels), the same with
# Candle's kernels (FERROSERVE_CPU_KERNELS=candle: the path before them), ferroserve on each kernel family this
# CPU runs, and the Q4_1 file as stored; llama.cpp on the Q4_1 file and on the Q8_0 file `ferroserve quantize`
# writes (the weights ferroserve's default computes with).
#
#   benches/llm.sh [threads]      (after `make build-release`; writes benches/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
threads=${1:-2}
bin=target/release/ferroserve
out=target/bench-llm
mkdir -p "$out"
gguf=assets/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf
[ -x "$bin" ] || make build-release
[ -f "$gguf" ] || deploy/fetch-assets.sh assets

# `npm install`, not `npm ci`: node-llama-cpp lists optional packages for platforms that npm ci wants in the lock.
(cd benches/llama-cpp && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --no-audit --no-fund > /dev/null)
q8="$out/SmolLM2-135M-Instruct.Q8_0.gguf"
[ -f "$q8" ] || "$bin" quantize --model "$gguf" --output "$q8" --to q8_0 > /dev/null
# The same text as benches/generation.sh's shared system prompt: the first 60 package descriptions.
prompt="$out/prompt.txt"
{ printf 'You answer questions about Debian packages. Known packages: '; head -n 60 tests/data/sentences.txt | tr '\n' ' '; } > "$prompt"

ours() { # label dtype kernels
  FERROSERVE_CPU_KERNELS=$3 "$bin" bench llm --model-repository deploy/model-repository --dtype "$2" \
    --prompt-file "$prompt" --threads "$threads" --tokens 64 --streams 1,4,16 --repeats 3 |
    sed "s/^{/{\"label\":\"$1\",/" >> "$out/runs.jsonl"
}
theirs() { # label file
  node benches/llama-cpp/baseline.mjs --model "$2" --prompt-file "$prompt" --threads "$threads" --tokens 64 \
    --streams 1,4,16 --repeats 3 | sed "s/^{/{\"label\":\"$1\",/" >> "$out/runs.jsonl"
}

: > "$out/runs.jsonl"
for round in 1 2; do
  echo "round $round" >&2
  ours "ferroserve, Q8_0 (default), own kernels" q8_0 auto
  theirs "llama.cpp, Q4_1 file" "$gguf"
  ours "ferroserve, Q8_0, Candle kernels (before)" q8_0 candle
  theirs "llama.cpp, Q8_0 file" "$q8"
done
for family in scalar avx2 avx512-vnni; do # each family this CPU runs (ferroserve refuses the others)
  ours "ferroserve, Q8_0, $family kernels" q8_0 "$family" 2> /dev/null || echo "$family: not on this CPU" >&2
done
ours "ferroserve, Q4_1 as stored, own kernels" q4_1 auto

python3 - "$out/runs.jsonl" "$(date -u +%F)" "$(machine)" "$threads" >> benches/RESULTS.md <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = {}
for r in runs:
    b = best.setdefault(r["label"], {"prefill": 0, "decode": {}, "variant": r.get("cpu_variant", "")})
    b["prefill"] = max(b["prefill"], r["prefill_tok_s"])
    for n, v in r["decode"].items():
        b["decode"][n] = max(b["decode"].get(n, 0), v)
base = best["llama.cpp, Q4_1 file"]
print(f"\n### LLM on the CPU against llama.cpp (benches/llm.sh, {sys.argv[2]})\n")
print(f"{sys.argv[3]}; SmolLM2-135M-Instruct, {sys.argv[4]} threads on both sides, greedy, best of 3 runs x 2 rounds")
print(f"per figure. llama.cpp: node-llama-cpp 3.22.1 prebuilt, {base['variant'].strip()}")
print("Ratios are against llama.cpp on the Q4_1 file (the file both load).\n")
print("| engine, weights, kernels | prefill tok/s (ratio) | decode 1 stream | 4 streams | 16 streams |")
print("|---|---|---|---|---|")
for label, b in best.items():
    cells = [f"{b['prefill']:.0f} ({b['prefill'] / base['prefill']:.2f}x)"]
    for n in ("1", "4", "16"):
        v = b["decode"].get(n, 0)
        cells.append(f"{v:.0f} ({v / base['decode'][n]:.2f}x)")
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
tail -n 14 benches/RESULTS.md
