#!/usr/bin/env bash
# The semantic response cache on this machine, one run, appended to benches/RESULTS.md: SmolLM2 (Q8_0) with a
# semantic cache embedding with MiniLM. For each of 10 questions, in this order:
#   1. the question with `cache: skip` (generated, no cache work: the baseline),
#   2. the same question with the caches on (a miss: generated plus the semantic lookup, then stored),
#   3. a paraphrase (a SEMANTIC hit, or a miss when below the threshold).
# Every request is greedy, 32 tokens at most, non-streamed; times are curl's total per request. Prefix reuse is
# off, so the baseline and the miss both prefill their whole prompt.
# Usage: benches/semantic.sh   (after `cargo build --release --bin ferroserve`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferroserve
dir=$(mktemp -d)
source benches/lib.sh
minilm_repository "$dir/repo"
printf 'name = "llm"\ntask = "generation"\nbackend = "candle"\npath = "%s"\nweights = "SmolLM2-135M-Instruct.Q4_1.gguf"\ndtype = "q8_0"\n[generation]\nprefix_cache_mb = 0\n[[lanes]]\ndevice = "cpu"\nthreads = 2\n[semantic_cache]\nembedding_model = "all-MiniLM-L6-v2"\n' \
  "$(realpath assets/SmolLM2-135M-Instruct)" > "$dir/repo/llm.toml"
start_server /tmp/ferroserve-semantic-bench.log --model-repository "$dir/repo"

pairs=(
  "What is the capital of France?|What's the capital of France?"
  "How do I reverse a list in Python?|How can I reverse a list in Python?"
  "What is the boiling point of water?|What's the boiling point of water?"
  "Who wrote Romeo and Juliet?|Who is the author of Romeo and Juliet?"
  "How many days are in a leap year?|How many days does a leap year have?"
  "What is photosynthesis?|What is photosynthesis? Explain."
  "Translate hello into Spanish.|Translate 'hello' into Spanish."
  "What is the largest planet in the solar system?|Which is the largest planet in our solar system?"
  "Give me a synonym for happy.|Give me a synonym of happy."
  "What does CPU stand for?|What does the abbreviation CPU stand for?"
)
ask() { # question cache-mode -> "seconds x-cache"
  local body
  body=$(printf '{"model":"llm","temperature":0,"max_tokens":32,"cache":"%s","messages":[{"role":"user","content":"%s"}]}' "$2" "$1")
  curl -s -o /dev/null -D "$dir/h" -w '%{time_total}' -H 'content-type: application/json' -d "$body" \
    127.0.0.1:$BENCH_HTTP_PORT/v1/chat/completions
  printf ' %s\n' "$(grep -i '^x-cache:' "$dir/h" | tr -d '\r' | cut -d' ' -f2)"
}
ask "Warm up." skip > /dev/null
skip=() miss=() hit=() missed=()
for pair in "${pairs[@]}"; do
  q=${pair%%|*} p=${pair#*|}
  read -r t _ < <(ask "$q" skip); skip+=("$t")
  read -r t _ < <(ask "$q" default); miss+=("$t")
  read -r t c < <(ask "$p" default)
  if [ "$c" = SEMANTIC ]; then hit+=("$t"); else missed+=("\"$p\""); fi
done
stats() { [ $# -gt 0 ] || { printf -- '- | - | -'; return; }; printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1*1000; s+=$1*1000} END {printf "%.1f | %.1f | %.1f", s/NR, a[int((NR+1)/2)], a[NR]}'; }
machine="$(machine)"
{
  echo
  echo "| date | machine | requests | n | mean ms | p50 ms | max ms |"
  echo "|---|---|---|---|---|---|---|"
  echo "| $(date +%F) | $machine | generated, cache skipped (baseline) | ${#skip[@]} | $(stats "${skip[@]}") |"
  echo "| $(date +%F) | $machine | generated, semantic lookup missed (then stored) | ${#miss[@]} | $(stats "${miss[@]}") |"
  echo "| $(date +%F) | $machine | paraphrase answered from the semantic cache | ${#hit[@]} | $(stats ${hit[@]+"${hit[@]}"}) |"
  echo
  echo "Paraphrases below the threshold (0.95), generated instead: ${#missed[@]} of ${#pairs[@]}: ${missed[*]:-none}."
} | tee -a benches/RESULTS.md
