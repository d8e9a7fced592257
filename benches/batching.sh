#!/usr/bin/env bash
# Dynamic batching on this machine, one run, appended to benches/RESULTS.md:
#   1. batching on (max_batch_size 32) versus off (max_batch_size 1) at concurrency 1, 4, 16, 64;
#   2. 10x overload: an open loop at ten times the throughput measured in step 1 (requests refused with
#      429, p99 of the admitted ones, the server's peak RSS), with the default queue (1024 sequences) and
#      a short one (128): the queue bounds how long an admitted request can wait.
# Usage: benches/batching.sh   (after `make build-release`; the load comes from `ferroserve bench load`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
load() { "$bin" bench load --url "$BENCH_URL" --api openai-embeddings --out target/bench-load --results benches/RESULTS.md "$@"; }
requests=${REQUESTS:-1000}
repo=$(mktemp -d)
ckpt=$(realpath assets/all-MiniLM-L6-v2)

source benches/lib.sh

serve() { # max_batch_size max_queue_size -> starts the server, sets $server
  printf 'name = "all-MiniLM-L6-v2"\ntask = "embedding"\nbackend = "candle"\npath = "%s"\n[batching]\nmax_batch_size = %s\nmax_queue_size = %s\n' \
    "$ckpt" "$1" "$2" > "$repo/minilm.toml"
  start_server /tmp/ferroserve-bench.log --model-repository "$repo"
}

for size in 32 1; do
  serve "$size" 1024
  load --concurrency 1,4,16,64 --requests "$requests" \
    --server-pid "$server" --note "max_batch_size $size, 1 CPU lane" | tee /tmp/ferroserve-bench-$size.txt
  stop_server
done

# Capacity: the best throughput with batching on; overload at ten times it.
capacity=$(awk -F'|' '/^\| http/ {if ($7 + 0 > m) m = $7 + 0} END {print m}' /tmp/ferroserve-bench-32.txt)
rate=$(awk -v c="$capacity" 'BEGIN {printf "%.0f", c * 10}')
for queue in 1024 128; do
  serve 32 "$queue"
  load --rate "$rate" --duration 10 --server-pid "$server" \
    --note "10x overload (capacity ${capacity} req/s), max_batch_size 32, max_queue_size $queue"
  stop_server
done
