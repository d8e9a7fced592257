#!/usr/bin/env bash
# The language model on a GPU lane, run on a machine with an NVIDIA GPU and its driver:
#   1. answers: SmolLM2's greedy chat answers on the CUDA lane (Candle's CUDA backend) in F32, Q8_0 and Q4_1 as
#      stored, against the CPU lane's F32 answers on the same server and llama.cpp's reference answers on the
#      Q4_1 weights (tests/data/smollm2_llamacpp_greedy.json);
#   2. served streamed chat on the CUDA lane (Q8_0) at 1, 4 and 16 streams (`bench load --api openai-chat`, caches
#      skipped);
#   3. the engine in process (`bench llm`): prefill of a ~580-token prompt and aggregate greedy decode of 1, 4 and
#      16 streams, on the GPU (F32, Q8_0) and on the CPU lane with every core (Q8_0).
# Usage: benches/gpu-llm.sh FERROSERVE_CUDA_BIN GGUF_FILE OUT_DIR
#   FERROSERVE_CUDA_BIN: deploy/build-cuda.sh's ferroserve-cuda; GGUF_FILE: SmolLM2-135M-Instruct.Q4_1.gguf.
# Writes OUT_DIR/answers.json, llm-*.json, RESULTS.md (the load) and server.log; exits 1, after the measures, if
# an F32 answer on the GPU differs from the CPU's. GPU_DEVICE (default cuda:0) names the GPU; GPU_DEVICE=cpu runs
# every step on the CPU, to check the script on a machine without one.
set -euo pipefail
bin=$(realpath "$1"); gguf=$(realpath "$2"); out=$(realpath "$3")
gpu=${GPU_DEVICE:-cuda:0}
cd "$(dirname "$0")/.."
source benches/lib.sh
mkdir -p "$out"
repo=$(mktemp -d)
cores=$(nproc)

model() { # name dtype device
  { printf 'name = "%s"\ntask = "generation"\nbackend = "candle"\n' "$1"
    printf 'path = "%s"\nweights = "%s"\ndtype = "%s"\n' "$(dirname "$gguf")" "$(basename "$gguf")" "$2"
    printf '[generation]\nmax_num_seqs = 16\nmax_context_tokens = 4096\nkv_cache_mb = 1024\n'
    printf '[[lanes]]\ndevice = "%s"\n' "$3"
    [ "$3" = cpu ] && printf 'threads = %s\n' "$cores"; true; } > "$repo/$1.toml"
}
model smollm2-cpu f32 cpu
model smollm2-cuda f32 "$gpu"
model smollm2-cuda-q8_0 q8_0 "$gpu"
model smollm2-cuda-q4_1 q4_1 "$gpu"

smi() { if command -v nvidia-smi > /dev/null; then nvidia-smi "$@"; else echo "(no nvidia-smi)"; fi; }
smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
echo "host: $(machine)" | tee -a "$out/gpu.txt"
start_server "$out/server.log" --model-repository "$repo"
smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory with the three GPU models loaded: /' |
  tee -a "$out/gpu.txt"

echo "== 1. greedy answers"
answers=0
python3 - "$BENCH_URL" "$out/answers.json" <<'PY' || answers=$?
import json, sys, urllib.request
url, path = sys.argv[1], sys.argv[2]
ref = json.load(open("tests/data/smollm2_llamacpp_greedy.json"))
def answer(model, p):
    body = {"model": model, "messages": p["messages"], "temperature": 0, "max_tokens": p["n_output_tokens"]}
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))["choices"][0]["message"]["content"]
def agree(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return {"equal": a == b, "common_prefix_chars": n}
report, f32_differs = [], False
for p in ref["prompts"]:
    cpu = answer("smollm2-cpu", p)
    row = {"prompt": p["messages"][-1]["content"], "cpu_f32": cpu, "llama_cpp_q4_1": p["output_text"]}
    for m in ["smollm2-cuda", "smollm2-cuda-q8_0", "smollm2-cuda-q4_1"]:
        row[m] = answer(m, p)
    row["cuda_f32_vs_cpu_f32"] = agree(row["smollm2-cuda"], cpu)
    row["cuda_q8_0_vs_cpu_f32"] = agree(row["smollm2-cuda-q8_0"], cpu)
    row["cuda_q4_1_vs_llama_cpp_q4_1"] = agree(row["smollm2-cuda-q4_1"], p["output_text"])
    f32_differs |= not row["cuda_f32_vs_cpu_f32"]["equal"]
    report.append(row)
json.dump(report, open(path, "w"), indent=1)
print(json.dumps(report, indent=1))
sys.exit(1 if f32_differs else 0)
PY

echo "== 2. served streamed chat on the GPU lane"
"$bin" bench load --url "$BENCH_URL" --api openai-chat --model smollm2-cuda-q8_0 --concurrency 1,4,16 \
  --duration 8 --warmup 4 --max-tokens 64 --ignore-eos --cache skip --out "$out/load" --results "$out/RESULTS.md" \
  --note "SmolLM2 Q8_0 on $gpu, 64-token answers"
stop_server

echo "== 3. the engine in process"
prompt="$out/prompt.txt"
{ printf 'You answer questions about Debian packages. Known packages: '; head -n 60 tests/data/sentences.txt | tr '\n' ' '; } > "$prompt"
llm() { # label device dtype threads
  "$bin" bench llm --model-repository "$repo" --model smollm2-cuda --device "$2" --dtype "$3" --threads "$4" \
    --prompt-file "$prompt" --tokens 64 --streams 1,4,16 --repeats 3 | tee "$out/llm-$1.json"
}
llm cuda-f32 "$gpu" f32 "$cores"
llm cuda-q8_0 "$gpu" q8_0 "$cores"
llm cpu-q8_0 cpu q8_0 "$cores"
if [ "$answers" -ne 0 ]; then
  echo "an F32 answer on $gpu differs from the CPU's: see $out/answers.json" >&2
  exit 1
fi
