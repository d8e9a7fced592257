#!/usr/bin/env bash
# Vector search on this machine, one run, appended to benches/RESULTS.md: ferroserve's collections and hnswlib
# on the same 20,000 MiniLM vectors of Debian package descriptions (`apt-cache dumpavail`), same M and
# ef_construction, both single-threaded; recall@10 against exact search and queries/s per ef, build time, and
# the recall of filtered searches keeping 1% and 50% of the points; then scalar INT8 quantization (vectors on
# disk) with and without re-scoring: recall, queries/s and memory. Queries/s: the best of three passes.
# Usage: benches/vectors.sh   (needs Debian's apt-cache, a C++ compiler for hnswlib, and the fetched assets;
#                              ONNX variants made by deploy/make-variants.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
trap - EXIT
out=target/bench-data
mkdir -p "$out"
if [ ! -s "$out/descriptions.txt" ]; then
  # awk reads everything (no early close: pipefail would end the script on head's SIGPIPE).
  apt-cache dumpavail | sed -n 's/^Description: //p' | awk '!seen[$0]++ && n++ < 20500' > "$out/descriptions.txt"
fi
cargo build --release -p ferroserve-bench --bin vectors-bench
target/release/vectors-bench --texts "$out/descriptions.txt" --points 20000 --queries 500 --out "$out"
if [ ! -x "$out/venv/bin/python" ]; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check numpy==2.3.5 hnswlib==0.8.0
fi
m=$(python3 -c "import json;print(json.load(open('$out/ferroserve.json'))['m'])")
efc=$(python3 -c "import json;print(json.load(open('$out/ferroserve.json'))['ef_construct'])")
efs=$(python3 -c "import json;print(','.join(str(s['ef']) for s in json.load(open('$out/ferroserve.json'))['sweep']))")
"$out/venv/bin/python" benches/hnswlib_bench.py "$out" "$m" "$efc" "$efs" > "$out/hnswlib.json"
python3 - "$out" "$(machine)" <<'PY' | tee -a benches/RESULTS.md
import json, sys
out, machine = sys.argv[1], sys.argv[2]
ours, theirs = json.load(open(f"{out}/ferroserve.json")), json.load(open(f"{out}/hnswlib.json"))
print(f"\n### Vector search: ferroserve collections vs hnswlib {theirs['version']} ({ours['date']})\n")
print(f"{machine}. {ours['points']:,} MiniLM vectors ({ours['dim']} dimensions, Cosine) of Debian package descriptions, "
      f"{ours['queries']} held-out queries, M {ours['m']}, ef_construction {ours['ef_construct']}, one thread each, "
      f"recall@10 against exact search (`benches/vectors.sh`).\n")
print(f"Build: ferroserve {ours['build_secs']:.1f} s, hnswlib {theirs['build_secs']:.1f} s "
      f"({ours['build_secs'] / theirs['build_secs']:.2f}x).\n")
print("| ef | ferroserve recall | ferroserve queries/s | hnswlib recall | hnswlib queries/s |")
print("|---|---|---|---|---|")
for a, b in zip(ours["sweep"], theirs["sweep"]):
    print(f"| {a['ef']} | {a['recall']:.4f} | {a['qps']:,.0f} | {b['recall']:.4f} | {b['qps']:,.0f} |")
print()
for f in ours["filtered"]:
    print(f"Filter keeping {f['keeps']} of the points (ef {f['ef']}): recall@10 {f['recall']:.4f}, {f['qps']:,.0f} queries/s.")
print("\nScalar INT8 quantization, same vectors and queries (memory: vectors, payloads and graph held in RAM, "
      "from the structures' sizes; disk: full-precision vectors in the collection's file):\n")
print("| variant | build s | RAM MiB | of which graph MiB | disk MiB | " + " | ".join(f"ef {s['ef']} recall / q/s" for s in ours["sweep"]) + " |")
print("|---|---|---|---|---|" + "---|" * len(ours["sweep"]))
mib = lambda b: f"{b / 2**20:.1f}"
for v in ours["variants"]:
    cells = " | ".join(f"{s['recall']:.3f} / {s['qps']:,.0f}" for s in v["sweep"])
    print(f"| {v['name']} | {v['build_secs']:.1f} | {mib(v['memory_bytes'])} | {mib(v['graph_bytes'])} | {mib(v['disk_bytes'])} | {cells} |")
PY
