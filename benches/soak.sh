#!/usr/bin/env bash
# The soak benchmark (not in make test): the default repository served by a release build with a small
# queue (so bursts overload it), benches/soak.py's mixed traffic for SECONDS (default 1800), RSS sampled every
# second into target/soak-rss.csv; the summary is appended to benches/RESULTS.md.
# Usage: benches/soak.sh   (after `cargo build --release --bin ferroserve`; make venv)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
seconds=${SECONDS_TO_RUN:-1800}
source benches/lib.sh
start_server /tmp/ferroserve-soak.log --model-repository deploy/model-repository \
  --vectors-path "$(mktemp -d)/collections"
summary=$(tests/.venv/bin/python benches/soak.py --url "$BENCH_URL" --pid "$server" --seconds "$seconds" \
  --out target/soak-rss.csv)
stop_server
{
  echo
  echo "### Soak (benches/soak.sh, $(date -u +%F))"
  echo "Machine: $(machine). Default repository, release build; misses, cache hits, chat streams and a burst"
  echo "of 256 eight-text requests every minute, all at once; RSS sampled every second (target/soak-rss.csv)."
  echo '```'
  echo "$summary"
  echo '```'
} >> benches/RESULTS.md
echo "$summary"
