#!/usr/bin/env bash
# The default model against in-process ONNX Runtime, one run, appended to benches/RESULTS.md: all-MiniLM-L6-v2
# served over HTTP, loaded by `ferroserve bench load` at concurrency 1 and 32, against the onnxruntime wheel
# running the same ONNX file in process at batch 1 and 32 with the same two threads, on the same texts (the
# load sends them as they are, with the cache skipped, so both sides embed the same tokens); each side's best
# of three rounds, the two sides in turns (a baseline pass, then a pass of the load, for each server in each
# round), so that this machine's speed, which wanders from minute to minute, weighs on both sides alike.
# Three servers:
#   1. `make run`'s configuration (deploy/ferroserve.toml: four embedding models and the language model), where
#      the shared ONNX Runtime pool does not spin, to leave the cores to the language model, and a step that
#      computes alone runs on the model's solo session, whose pool spins (onnx_solo_sessions, the default);
#   2. the same with `--onnx-solo-sessions false` (every step on the shared pool, nothing spins);
#   3. the default model alone (its ONNX CPU lane), where nothing else computes and the shared pool spins.
# In 1 and 2 also the sharing of the cores: the default model at concurrency 1 and one SmolLM2 chat stream (64
# tokens), each alone, then at once (the one measured while the other runs from before to after it).
# Usage: benches/backends.sh   (after `make build-release` and deploy/make-variants.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
out=target/bench-backends
requests=${REQUESTS:-800}
rm -rf "$out"
mkdir -p "$out"
source benches/lib.sh

if [ ! -x target/bench-venv/bin/python ]; then
  python3 -m venv target/bench-venv
  target/bench-venv/bin/pip install --quiet --disable-pip-version-check onnxruntime==1.31.1 tokenizers==0.22.1 numpy==2.3.5
fi

load() {  # NAME ROUND: one in-process baseline pass and one pass of the load on the running server
  target/bench-venv/bin/python benches/ort_baseline.py --model-dir assets/all-MiniLM-L6-v2-onnx \
    --texts tests/data/sentences.txt --limit "$requests" --threads 2 --batch 1,32 --by-length 12 --passes 1 \
    | tee "$out/$1-$2-baseline.json"
  "$bin" bench load --url "$BENCH_URL" --model all-MiniLM-L6-v2 --concurrency 1,32 --requests "$requests" \
    --cache skip --server-pid "$server" --out "$out/$1-$2" --note "$1, round $2" | tee "$out/$1-$2.txt"
}

embed() {  # OUT [SECONDS]: the default model at concurrency 1 ($requests requests, or SECONDS)
  "$bin" bench load --url "$BENCH_URL" --model all-MiniLM-L6-v2 --concurrency 1 --cache skip \
    ${2:+--duration "$2"} --requests "$requests" --out "$out/$1" > /dev/null
}

chat() {  # OUT SECONDS: one chat stream of 64-token answers
  "$bin" bench load --url "$BENCH_URL" --api openai-chat --model SmolLM2-135M-Instruct --concurrency 1 \
    --duration "$2" --warmup 2 --max-tokens 64 --ignore-eos --cache skip --out "$out/$1" > /dev/null
}

sharing() {  # NAME ROUND: each alone, then each measured while the other runs from before to after it
  embed "$1-$2-embed-alone"
  chat "$1-$2-chat-alone" 10
  chat "$1-$2-chat-around" 16 &
  sleep 3
  embed "$1-$2-embed-beside"
  wait $!
  embed "$1-$2-embed-around" 16 &
  sleep 3
  chat "$1-$2-chat-beside" 10
  wait $!
}

make_run() {  # NAME ROUND ARGS...: `make run`'s configuration
  local name=$1 round=$2 seeded=1
  shift 2
  [ -d "$out/vectors" ] || seeded=
  start_server "$out/$name-$round.log" --config deploy/ferroserve.toml --vectors-path "$out/vectors" "$@"
  # The first start seeds the example collection (embedding 2,000 texts): let it finish before measuring.
  for _ in $(seq 600); do
    [ -n "$seeded" ] || grep -qE "collection seeded|seeding failed" "$out/$name-$round.log" && break
    sleep 0.5
  done
  load "$name" "$round"
  sharing "$name" "$round"
  stop_server
}

alone="$out/alone-repository"
mkdir -p "$alone"
sed -e "s|\"../../assets/|\"$(realpath assets)/|" deploy/model-repository/all-MiniLM-L6-v2.toml > "$alone/minilm.toml"
for round in 1 2 3; do
  make_run solo "$round"
  make_run no-solo "$round" --onnx-solo-sessions false
  start_server "$out/alone-$round.log" --model-repository "$alone" --chains-path "$out/no-chains"
  load alone "$round"
  stop_server
done

python3 - "$out" "$(machine)" "$(date -u +%F)" <<'PY' | tee -a benches/RESULTS.md
import json, sys
out, machine, date = sys.argv[1:]
first = json.load(open(f"{out}/solo-1-baseline.json"))
rounds = (1, 2, 3)
def level(path):
    return json.load(open(f"{path}/load.json"))["targets"][0]["levels"][0]
print(f"\n### The default model against in-process ONNX Runtime (benches/backends.sh, {date})\n")
print(f"{machine}. all-MiniLM-L6-v2 over HTTP, one text per request, the cache skipped, the same {first['texts']} "
      f"texts as onnxruntime {first['onnxruntime']} in process on the same ONNX file ({first['threads']} threads); "
      f"best of three rounds on each side, the two sides in turns.\n")
print("| server | level | ferroserve texts/s | in-process ONNX Runtime texts/s | ratio | server peak RSS MiB |")
print("|---|---|---|---|---|---|")
servers = (("solo", "`make run`'s configuration (solo sessions, the default)"),
           ("no-solo", "`make run`'s configuration, `--onnx-solo-sessions false`"),
           ("alone", "the model alone (the shared pool spins)"))
for name, what in servers:
    levels, ort, rss = {}, {}, 0.0
    for r in rounds:
        for l in json.load(open(f"{out}/{name}-{r}/load.json"))["targets"][0]["levels"]:
            levels[l["concurrency"]] = max(levels.get(l["concurrency"], 0), l["throughput"])
            rss = max(rss, l.get("server_peak_rss_mib") or 0.0)
        for batch, rate in json.load(open(f"{out}/{name}-{r}-baseline.json"))["texts_per_second"].items():
            ort[batch] = max(ort.get(batch, 0), rate)
    for c, batch, how in ((1, "1", "batch 1"), (32, "32", "batch 32"), (32, "32-by-length", "batch 32 cut by length")):
        print(f"| {what} | concurrency {c} vs {how} | {levels[c]:.0f} | {ort[batch]:.0f} | {levels[c] / ort[batch]:.2f} | {rss:.0f} |")
print("\nSharing the two cores in `make run`'s configuration: the default model at concurrency 1 (texts/s) and one "
      "SmolLM2 chat stream of 64-token answers (tokens/s), each alone and each while the other runs; the three rounds.\n")
print("| server | embeddings alone | chat alone | embeddings beside chat | chat beside embeddings |")
print("|---|---|---|---|---|")
for name, what in servers[:2]:
    cells = [" / ".join(f"{level(f'{out}/{name}-{r}-{part}')['throughput']:.0f}" for r in rounds)
             for part in ("embed-alone", "chat-alone", "embed-beside", "chat-beside")]
    print(f"| {what} | " + " | ".join(cells) + " |")
PY
