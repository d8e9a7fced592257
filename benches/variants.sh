#!/usr/bin/env bash
# Backend x variant x batch size on this machine, one run, appended to benches/RESULTS.md: each variant of
# all-MiniLM-L6-v2 alone in a server (so the peak RSS is its own), `ferroserve bench load` at 1, 8 and 32 texts
# per request. (`ferroserve bench variants` compares the same variants in process, without a server.)
# Usage: benches/variants.sh   (after `make build-release` and deploy/make-variants.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
seconds=${SECONDS_PER_ROW:-8}
repo=$(mktemp -d)
assets=$(realpath assets)

source benches/lib.sh

serve() { # name backend path dtype
  rm -f "$repo"/*.toml
  printf 'name = "%s"\ntask = "embedding"\nbackend = "%s"\npath = "%s"\ndtype = "%s"\n' "$1" "$2" "$3" "$4" > "$repo/m.toml"
  start_server /tmp/ferroserve-variants.log --model-repository "$repo"
}

while read -r name backend path dtype; do
  serve "$name" "$backend" "$assets/$path" "$dtype"
  for batch in 1 8 32; do
    "$bin" bench load --url "$BENCH_URL" --model "$name" --batch "$batch" --concurrency 4 --duration "$seconds" \
      --warmup 10 --server-pid "$server" --out target/bench-load --results benches/RESULTS.md \
      --note "variant $name, $batch texts/request" | grep '^| http'
  done
  stop_server
done <<'LIST'
candle-f32 candle all-MiniLM-L6-v2 f32
candle-f16 candle all-MiniLM-L6-v2 f16
onnx-fp32 onnx all-MiniLM-L6-v2-onnx f32
onnx-fp16 onnx all-MiniLM-L6-v2-onnx-fp16 f32
onnx-int8 onnx all-MiniLM-L6-v2-onnx-int8 f32
candle-q8_0 candle all-MiniLM-L6-v2 q8_0
LIST
