#!/usr/bin/env bash
# The default model against in-process ONNX Runtime, one run, appended to benches/RESULTS.md: all-MiniLM-L6-v2
# served over HTTP, loaded by `ferroserve bench load` at concurrency 1 and 32, against the onnxruntime wheel
# running the same ONNX file in process at batch 1 and 32 with the same two threads, on the same texts (the
# load sends them as they are, with the cache skipped, so both sides embed the same tokens); each side's best
# of three passes, taken in turns (a baseline pass, then a pass of the load, three times per server), so that
# this machine's speed, which wanders from minute to minute, weighs on both sides alike. Two servers:
#   1. `make run`'s configuration (deploy/ferroserve.toml: four embedding models and the language model), where
#      the shared ONNX Runtime pool does not spin, to leave the cores to the language model;
#   2. the default model alone (its ONNX CPU lane), where nothing else computes and the pool spins.
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

load() {  # load NAME: three turns of one in-process baseline pass and one pass of the load on the running server
  for pass in 1 2 3; do
    target/bench-venv/bin/python benches/ort_baseline.py --model-dir assets/all-MiniLM-L6-v2-onnx \
      --texts tests/data/sentences.txt --limit "$requests" --threads 2 --batch 1,32 --by-length 12 --passes 1 \
      | tee "$out/$1-$pass-baseline.json"
    "$bin" bench load --url "$BENCH_URL" --model all-MiniLM-L6-v2 --concurrency 1,32 --requests "$requests" \
      --cache skip --server-pid "$server" --out "$out/$1-$pass" --note "$1, pass $pass" | tee "$out/$1-$pass.txt"
  done
}

# The first start seeds the example collection (embedding 2,000 texts): let it finish before measuring.
start_server "$out/server.log" --config deploy/ferroserve.toml --vectors-path "$out/vectors"
for _ in $(seq 600); do grep -qE "collection seeded|seeding failed" "$out/server.log" && break; sleep 0.5; done
load make-run
stop_server

alone="$out/alone-repository"
mkdir -p "$alone"
sed -e "s|\"../../assets/|\"$(realpath assets)/|" deploy/model-repository/all-MiniLM-L6-v2.toml > "$alone/minilm.toml"
start_server "$out/server-alone.log" --model-repository "$alone" --chains-path "$out/no-chains"
load alone
stop_server

python3 - "$out" "$(machine)" "$(date -u +%F)" <<'PY' | tee -a benches/RESULTS.md
import json, sys
out, machine, date = sys.argv[1:]
first = json.load(open(f"{out}/make-run-1-baseline.json"))
print(f"\n### The default model against in-process ONNX Runtime (benches/backends.sh, {date})\n")
print(f"{machine}. all-MiniLM-L6-v2 over HTTP, one text per request, the cache skipped, the same {first['texts']} "
      f"texts as onnxruntime {first['onnxruntime']} in process on the same ONNX file ({first['threads']} threads); "
      f"best of three passes on each side, the two sides in turns.\n")
print("| server | level | ferroserve texts/s | in-process ONNX Runtime texts/s | ratio |")
print("|---|---|---|---|---|")
for name, what in (("make-run", "`make run`'s configuration (pool does not spin)"), ("alone", "the model alone (pool spins)")):
    levels, ort = {}, {}
    for p in (1, 2, 3):
        for l in json.load(open(f"{out}/{name}-{p}/load.json"))["targets"][0]["levels"]:
            levels[l["concurrency"]] = max(levels.get(l["concurrency"], 0), l["throughput"])
        for batch, rate in json.load(open(f"{out}/{name}-{p}-baseline.json"))["texts_per_second"].items():
            ort[batch] = max(ort.get(batch, 0), rate)
    for c, batch, how in ((1, "1", "batch 1"), (32, "32", "batch 32"), (32, "32-by-length", "batch 32 cut by length")):
        print(f"| {what} | concurrency {c} vs {how} | {levels[c]:.0f} | {ort[batch]:.0f} | {levels[c] / ort[batch]:.2f} |")
PY
