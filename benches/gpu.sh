#!/usr/bin/env bash
# GPU lanes check and benchmark, run on a machine with an NVIDIA GPU and its driver:
#   1. agreement of the CUDA lane (F32 and F16) with the CPU lane over tests/data/sentences.txt;
#   2. throughput of CPU-only, GPU-only (F32, F16) and mixed GPU+CPU lanes at 1 to 256 texts per request.
# Usage: benches/gpu.sh FERROSERVE_CUDA_BIN CHECKPOINT_DIR OUT_DIR   (the load: FERROSERVE_CUDA_BIN bench load)
set -euo pipefail
bin=$(realpath "$1"); ckpt=$(realpath "$2"); out=$(realpath "$3")
cd "$(dirname "$0")/.."
mkdir -p "$out"
repo=$(mktemp -d)
cpu_threads=$(( $(nproc) / 2 ))

model() { # name dtype lanes...
  local name=$1 dtype=$2; shift 2
  { printf 'name = "%s"\ntask = "embedding"\nbackend = "candle"\npath = "%s"\ndtype = "%s"\n' "$name" "$ckpt" "$dtype"
    printf '[batching]\nmax_batch_size = 32\nmax_queue_size = 8192\n'
    for lane in "$@"; do printf '[[lanes]]\n%s\n' "$lane"; done; } > "$repo/$name.toml"
}
gpu_lane='device = "cuda:0"
max_batch_size = 256
max_batch_tokens = 65536'
model minilm-cpu f32 "device = \"cpu\"
threads = $cpu_threads"
model minilm-cuda f32 "$gpu_lane"
model minilm-cuda-f16 f16 "$gpu_lane"
model minilm-mixed f32 "$gpu_lane" "device = \"cpu\"
threads = $cpu_threads"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
"$bin" serve --model-repository "$repo" --http-addr 127.0.0.1:18080 --grpc-addr 127.0.0.1:15051 > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python3 - <<'PY'
import json, time, urllib.request
for _ in range(600):
    try:
        if urllib.request.urlopen("http://127.0.0.1:18080/ready", timeout=1).status == 200: break
    except OSError: pass
    time.sleep(0.2)
else:
    raise SystemExit("server not ready")
PY

python3 - "$out/agreement.json" <<'PY'
import json, math, sys, urllib.request
texts = [l.strip() for l in open("tests/data/sentences.txt") if l.strip()]
def embed(model):
    out = []
    for i in range(0, len(texts), 64):
        req = urllib.request.Request("http://127.0.0.1:18080/v1/embeddings",
            data=json.dumps({"model": model, "input": texts[i:i+64]}).encode(), headers={"content-type": "application/json"})
        out += [d["embedding"] for d in json.load(urllib.request.urlopen(req))["data"]]
    return out
def cos(a, b):
    return sum(x*y for x, y in zip(a, b)) / math.sqrt(sum(x*x for x in a) * sum(y*y for y in b))
cpu = embed("minilm-cpu")
report = {"sentences": len(texts)}
for model in ["minilm-cuda", "minilm-cuda-f16", "minilm-mixed"]:
    c = [cos(a, b) for a, b in zip(embed(model), cpu)]
    report[model] = {"min_cosine_vs_cpu": min(c), "mean_cosine_vs_cpu": sum(c) / len(c)}
json.dump(report, open(sys.argv[1], "w"), indent=1)
print(json.dumps(report, indent=1))
PY

for m in minilm-cpu minilm-cuda minilm-cuda-f16 minilm-mixed; do
  for b in 1 8 32 64 128 256; do
    "$bin" bench load --url http://127.0.0.1:18080 --model "$m" --batch "$b" --concurrency 4 --duration 4 \
      --warmup 8 --out "$out/load-$m-$b" --results "$out/RESULTS.md" \
      --note "texts/request $b; lanes: $m (cpu lanes $cpu_threads threads)" | grep '^| http'
  done
done
curl -s http://127.0.0.1:18080/metrics 2>/dev/null | grep -E '^ferroserve_lane_sequences_total' > "$out/lanes.txt" || \
  python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:18080/metrics').read().decode())" | grep -E '^ferroserve_lane_sequences_total' > "$out/lanes.txt"
cat "$out/lanes.txt"
