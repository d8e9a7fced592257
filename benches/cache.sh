#!/usr/bin/env bash
# The embedding cache on this machine, one run, appended to benches/RESULTS.md:
#   1. hits: the same 800 sentences, cache warm, versus the cache skipped (x-ferroserve-cache: skip), at
#      concurrency 1 and 32;
#   2. the cost of a miss: every text unique (--unique), cache on versus cache off (embedding_mb = 0).
# Usage: benches/cache.sh   (after `cargo build --release --bin ferroserve --bin loadgen`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
loadgen=target/release/loadgen
requests=${REQUESTS:-1000}
dir=$(mktemp -d)
mkdir "$dir/repo"
printf 'name = "all-MiniLM-L6-v2"\ntask = "embedding"\nbackend = "candle"\npath = "%s"\n' \
  "$(realpath assets/all-MiniLM-L6-v2)" > "$dir/repo/minilm.toml"

serve() { # embedding_mb -> starts the server, sets $server
  printf '[server]\nmodel_repository = "repo"\n[cache]\nembedding_mb = %s\n' "$1" > "$dir/config.toml"
  "$bin" serve --config "$dir/config.toml" --http-addr 127.0.0.1:18080 --grpc-addr 127.0.0.1:15051 > /tmp/ferroserve-cache-bench.log 2>&1 &
  server=$!
  for _ in $(seq 300); do curl -sf 127.0.0.1:18080/ready > /dev/null && return; sleep 0.1; done
  echo "server not ready" >&2; exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; }
trap 'kill $server 2>/dev/null || true' EXIT
run() { "$loadgen" --http http://127.0.0.1:18080 --protocol http --server-pid "$server" "$@"; }

serve 256
# Warm the cache with the 800 sentences, then measure hits; then the same requests skipping the cache.
run --concurrency 32 --warmup 800 --requests 800 --results "" > /dev/null
run() { "$loadgen" --http http://127.0.0.1:18080 --protocol http --requests "$requests" --server-pid "$server" "$@"; }
run --concurrency 1,32 --note "embedding cache on, all hits"
run --concurrency 1,32 --cache skip --note "cache skipped (x-ferroserve-cache: skip)"
run --concurrency 1,32 --unique --note "embedding cache on, every text new (all misses)"
stop
serve 0
run --concurrency 1,32 --unique --note "embedding cache off (embedding_mb = 0), every text new"
stop
