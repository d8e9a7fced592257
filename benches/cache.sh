#!/usr/bin/env bash
# The embedding cache on this machine, one run, appended to benches/RESULTS.md:
#   1. hits: the same 800 sentences, cache warm, versus the cache skipped (x-ferroserve-cache: skip), at
#      concurrency 1 and 32;
#   2. the cost of a miss: every text unique (--unique), cache on versus cache off (embedding_mb = 0);
#   3. the shared Redis cache (needs redis-server: tests/setup-packages.sh): a second server whose local cache is
#      cold reads the 800 sentences another server wrote to Redis (every request an L2 hit), against the same
#      server skipping the caches, at concurrency 1 and 32 (the server restarts for each level: a hit fills L1).
# Usage: benches/cache.sh   (after `cargo build --release --bin ferroserve`; the load comes from `ferroserve bench load`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
load() { "$bin" bench load --url "$BENCH_URL" --api openai-embeddings --out target/bench-load "$@"; }
requests=${REQUESTS:-1000}
dir=$(mktemp -d)
source benches/lib.sh
minilm_repository "$dir/repo"

serve() { # embedding_mb [extra [cache] lines] -> starts the server, sets $server
  printf '[server]\nmodel_repository = "repo"\n[cache]\nembedding_mb = %s\n%s\n' "$1" "${2:-}" > "$dir/config.toml"
  start_server /tmp/ferroserve-cache-bench.log --config "$dir/config.toml"
}
redis=
trap 'stop_server; kill $redis 2>/dev/null || true' EXIT
run() { load --server-pid "$server" "$@"; }

serve 256
# Warm the cache with the 800 sentences, then measure hits; then the same requests skipping the cache.
run --concurrency 32 --warmup 800 --requests 800 > /dev/null
run() { load --requests "$requests" --server-pid "$server" --results benches/RESULTS.md "$@"; }
run --concurrency 1,32 --note "embedding cache on, all hits"
run --concurrency 1,32 --cache skip --note "cache skipped (x-ferroserve-cache: skip)"
run --concurrency 1,32 --unique --note "embedding cache on, every text new (all misses)"
stop_server
serve 0
run --concurrency 1,32 --unique --note "embedding cache off (embedding_mb = 0), every text new"
stop_server

if [ "${SKIP_REDIS:-}" != 1 ]; then
  redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
  redis=$!
  sleep 0.5
  shared='redis_url = "redis://127.0.0.1:16379/0"'
  run() { load --server-pid "$server" "$@"; }
  # Server A computes the 800 sentences and writes them to Redis.
  serve 256 "$shared"
  run --concurrency 32 --requests 800 > /dev/null
  sleep 1
  stop_server
  for c in 1 32; do
    serve 256 "$shared"
    run --concurrency "$c" --requests 800 --warmup 0 --results benches/RESULTS.md --note "fresh server, local cache cold, every text in Redis (L2 hits)"
    curl -s 127.0.0.1:18080/metrics | grep '^ferroserve_cache_l2_hits_total'
    run --concurrency "$c" --requests 800 --cache skip --results benches/RESULTS.md --note "same server, caches skipped (computed)"
    stop_server
  done
  kill "$redis"
fi
