#!/usr/bin/env bash
# The default model against in-process ONNX Runtime, one run, appended to benches/RESULTS.md: `make run`'s
# configuration (deploy/ferroserve.toml, the default repository, all models loaded) serving all-MiniLM-L6-v2,
# loaded by `ferroserve bench load` at concurrency 1 and 32 (one new text per request), against the onnxruntime
# wheel running the same ONNX file in process on the same texts at batch 1 and 32 with the same two threads.
# Usage: benches/backends.sh   (after `make build-release` and deploy/make-variants.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
out=target/bench-backends
requests=${REQUESTS:-800}
mkdir -p "$out"
source benches/lib.sh

if [ ! -x target/bench-venv/bin/python ]; then
  python3 -m venv target/bench-venv
  target/bench-venv/bin/pip install --quiet --disable-pip-version-check onnxruntime==1.31.1 tokenizers==0.22.1 numpy==2.3.5
fi
baseline=$(target/bench-venv/bin/python benches/ort_baseline.py --model-dir assets/all-MiniLM-L6-v2-onnx \
  --texts tests/data/sentences.txt --limit "$requests" --threads 2 --batch 1,32)
echo "in-process ONNX Runtime: $baseline"

# The first start seeds the example collection (embedding 2,000 texts): let it finish before measuring.
start_server "$out/server.log" --config deploy/ferroserve.toml --vectors-path "$out/vectors"
for _ in $(seq 600); do grep -qE "collection seeded|seeding failed" "$out/server.log" && break; sleep 0.5; done
"$bin" bench load --url "$BENCH_URL" --model all-MiniLM-L6-v2 --concurrency 1,32 --requests "$requests" --unique \
  --server-pid "$server" --out "$out/load" --note "make run's configuration" | tee "$out/load.txt"
stop_server

python3 - "$out/load/load.json" "$baseline" "$(machine)" "$(date -u +%F)" <<'PY' | tee -a benches/RESULTS.md
import json, sys
load, base, machine, date = json.load(open(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
levels = {l["concurrency"]: l["throughput"] for l in load["targets"][0]["levels"]}
ort = base["texts_per_second"]
print(f"\n### The default model against in-process ONNX Runtime (benches/backends.sh, {date})\n")
print(f"{machine}. `make run`'s configuration serving all-MiniLM-L6-v2 over HTTP, one new text per request "
      f"({base['texts']} texts); onnxruntime {base['onnxruntime']} in process on the same ONNX file, "
      f"{base['threads']} threads.\n")
print("| level | ferroserve texts/s | in-process ONNX Runtime texts/s | ratio |")
print("|---|---|---|---|")
for c, b in ((1, "1"), (32, "32")):
    print(f"| concurrency {c} vs batch {b} | {levels[c]:.0f} | {ort[b]:.0f} | {levels[c] / ort[b]:.2f} |")
PY
