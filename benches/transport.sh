#!/usr/bin/env bash
# What the production layers cost on the hot path, one run, appended to benches/RESULTS.md: embedding cache
# hits (no model work, so the layers are most of the time) at concurrency 1 and 32 over HTTP and gRPC,
#   1. no API keys (the layers run, nothing to check);
#   2. an API key with scopes and a rate limit too high to refuse (key digest, scope and bucket per request);
# then idle HTTP/2 streams against the gRPC port (benches/connections_probe.py): how many the server takes
# per connection and its resident memory before, with them, and after they close.
# Usage: benches/transport.sh   (after `cargo build --release --bin ferroserve`; make venv)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
requests=${REQUESTS:-4000}
dir=$(mktemp -d)
source benches/lib.sh
minilm_repository "$dir/repo"
key=bench-key-0123456789
digest=$(echo -n "$key" | "$bin" hash-key)

serve() { # [auth table] -> starts the server, sets $server
  printf '[server]\nmodel_repository = "repo"\n[cache]\nembedding_mb = 256\n%s\n' "${1:-}" > "$dir/config.toml"
  start_server /tmp/ferroserve-transport-bench.log --config "$dir/config.toml"
}
run() { # api url args... -> `ferroserve bench load` against the server
  local api=$1 url=$2; shift 2
  "$bin" bench load --api "$api" --url "$url" --server-pid "$server" --out target/bench-load "$@"
}
grpc_url="http://127.0.0.1:$BENCH_GRPC_PORT"

echo "### Production layers on the hot path (benches/transport.sh, $(date -u +%F))" >> benches/RESULTS.md
echo "Machine: $(machine). Embedding cache hits of all-MiniLM-L6-v2, $requests requests per row." >> benches/RESULTS.md

auth="$(printf '[[auth.keys]]\nname = "bench"\nsha256 = "%s"\nmodels = ["all-MiniLM-L6-v2"]\nrequests_per_second = 1000000\ntokens_per_minute = 1000000000\n' "$digest")"
# Two rounds, alternating, so warm-up and drift fall on both alike.
for round in 1 2; do
  for setup in open keyed; do
    if [ $setup = open ]; then serve; note="round $round: no API keys"; unset FERROSERVE_BENCH_API_KEY
    else serve "$auth"; note="round $round: API key with a model scope and limits never reached"; export FERROSERVE_BENCH_API_KEY=$key; fi
    run openai-embeddings "$BENCH_URL" --concurrency 32 --warmup 800 --requests 800 > /dev/null
    for api in openai-embeddings grpc; do
      url=$BENCH_URL; [ $api = grpc ] && url=$grpc_url
      run $api "$url" --concurrency 1,32 --requests "$requests" --note "$note" |
        grep '^| http' | sed "s/^| [^|]*|/| $setup | $api |/" >> "$dir/table.md"
    done
    stop_server
  done
done
unset FERROSERVE_BENCH_API_KEY
{ echo '| setup | api | level | ok | errors | rejected | req/s | texts/s | p50 ms | p90 ms | p99 ms | server peak RSS MiB |'
  echo '|---|---|---|---|---|---|---|---|---|---|---|---|'; cat "$dir/table.md"; } >> benches/RESULTS.md
serve
echo >> benches/RESULTS.md
echo "Idle HTTP/2 streams against the gRPC port (5 connections, each asking for 10,000 EmbedStream calls):" >> benches/RESULTS.md
echo '```' >> benches/RESULTS.md
tests/.venv/bin/python benches/connections_probe.py --pid "$server" --port "$BENCH_GRPC_PORT" \
  --connections 5 --streams 10000 | tee -a benches/RESULTS.md
echo '```' >> benches/RESULTS.md
stop_server
