#!/usr/bin/env bash
# Chain overhead on this machine, one run, appended to benches/RESULTS.md: the `rag` example chain against the
# same steps (a collection query with server-side embedding, then a chat completion) called one by one over
# HTTP by the client, at concurrency 1 and 16, caches off, sampling at temperature 0.7 with max_tokens 24.
# Usage: benches/chains.sh   (needs the fetched assets: make run once, or deploy/fetch-assets.sh assets)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
out=target/bench-data/chains
rm -rf "$out" && mkdir -p "$out"
cargo build --release -p ferroserve --bin ferroserve -p ferroserve-bench --bin chains-bench
# The example config with the caches off (a cached answer would hide the work), its own collections folder.
sed -e 's/^embedding_mb = .*/embedding_mb = 0/' -e 's/^response_mb = .*/response_mb = 0/' \
    -e 's#^path = "../data/collections"#path = "../target/bench-data/chains/collections"#' \
    -e 's#^file = "examples/#file = "../deploy/examples/#' -e 's#^path = "chains"#path = "../deploy/chains"#' \
    -e 's#^model_repository = "model-repository"#model_repository = "../deploy/model-repository"#' \
    deploy/ferroserve.toml > target/chains-bench.toml
start_server "$out/server.log" --config target/chains-bench.toml
target/release/chains-bench --url "$BENCH_URL" | tee "$out/results.jsonl"
stop_server
python3 - "$out/results.jsonl" "$(machine)" "$(date -u +%Y-%m-%d)" <<'PY' | tee -a benches/RESULTS.md
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n### Chain overhead: the rag chain vs the same steps called over HTTP ({sys.argv[3]})\n")
print(f"{sys.argv[2]}. `benches/chains.sh`: debian-packages collection (600 MiniLM vectors), SmolLM2-135M "
      "(Q4_1), 4 sources, 24 new tokens at temperature 0.7, caches off, release build.\n")
print("| concurrency | direct req/s | chain req/s | direct p50 ms | chain p50 ms | chain − direct p50 ms |")
print("|---|---|---|---|---|---|")
by = {(r["mode"], r["concurrency"]): r for r in rows}
for c in sorted({r["concurrency"] for r in rows}):
    d, k = by[("direct", c)], by[("chain", c)]
    print(f"| {c} | {d['requests_per_sec']:.2f} | {k['requests_per_sec']:.2f} | {d['p50_ms']:.0f} | "
          f"{k['p50_ms']:.0f} | {k['p50_ms'] - d['p50_ms']:+.0f} |")
PY
