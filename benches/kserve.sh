#!/usr/bin/env bash
# KServe v2 on this machine, one run, appended to benches/RESULTS.md: protocol overhead (squeezenet through
# KServe REST/gRPC against in-process ONNX Runtime; MiniLM through KServe REST/gRPC against the OpenAI route)
# and tensor batching on and off (MiniLM's graph as a tensor model, 16 clients). Requests/s, best effort,
# release build, caches off, squeezenet on every core (as in-process ONNX Runtime), with the real tritonclient.
# Usage: benches/kserve.sh   (needs the fetched assets and the ONNX variants: make test or make run once)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
out=target/bench-data/kserve
rm -rf "$out" && mkdir -p "$out/repo"
cargo build --release -p ferroserve --bin ferroserve
root=$(pwd)
cat > "$out/repo/squeezenet.toml" <<TOML
name = "squeezenet"
task = "tensor"
backend = "onnx"
path = "$root/assets/onnx-light"
weights = "light_squeezenet.onnx"
[[lanes]]
device = "cpu"
threads = $(nproc)
TOML
for batch in 16 1; do
  name=minilm-graph; [ "$batch" = 1 ] && name=minilm-graph-unbatched
  cat > "$out/repo/$name.toml" <<TOML
name = "$name"
task = "tensor"
backend = "onnx"
path = "$root/assets/all-MiniLM-L6-v2-onnx"
[batching]
max_batch_size = $batch
max_queue_delay_ms = 2
TOML
done
sed "s#^path = \"../../assets/#path = \"$root/assets/#" deploy/model-repository/all-MiniLM-L6-v2-onnx.toml > "$out/repo/minilm.toml"
if [ ! -x "$out/../kserve-venv/bin/python" ]; then
  python3 -m venv "$out/../kserve-venv"
  "$out/../kserve-venv/bin/pip" install --quiet --disable-pip-version-check \
    "tritonclient[http,grpc]==2.63.0" numpy==2.3.5 onnxruntime==1.31.1
fi
# Caches off: repeated inputs must be computed, not answered from the embedding cache.
printf '[cache]\nembedding_mb = 0\nresponse_mb = 0\n' > "$out/config.toml"
start_server "$out/server.log" --config "$out/config.toml" --model-repository "$out/repo" --max-body-bytes 67108864
"$out/../kserve-venv/bin/python" benches/kserve_bench.py "$BENCH_HTTP_PORT" "$BENCH_GRPC_PORT" assets/onnx-light | tee "$out/result.json"
stop_server
python3 - "$out/result.json" "$(machine)" "$(date -u +%Y-%m-%d)" <<'PY' | tee -a benches/RESULTS.md
import json, sys
r = json.load(open(sys.argv[1]))
print(f"\n### KServe v2: protocol overhead and tensor batching ({sys.argv[3]})\n")
print(f"{sys.argv[2]}. `benches/kserve.sh`, release build, the real tritonclient 2.63.0; baseline: in-process "
      f"onnxruntime {r['onnxruntime']} (the PyPI wheel) on the same input. Requests/s, one client unless said.\n")
for group in ("squeezenet", "minilm_8_texts", "minilm_graph_16_clients"):
    print(f"| {group} | requests/s |\n|---|---|")
    for k, v in r[group].items():
        print(f"| {k} | {v:,.1f} |")
    print()
PY
