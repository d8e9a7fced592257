#!/usr/bin/env bash
# Fuzzes the decoders that read untrusted bytes with cargo-fuzz (libFuzzer + AddressSanitizer) on a nightly
# toolchain: GGUF files (header, metadata, tensor table, tokenizer, chat template), ONNX files through the
# quantize rewrites, shared-cache entries, KServe binary tensors, chat templates. Not part of `make test`
# (which runs the property tests with damaged inputs on every commit); run it for long stretches.
#
# Usage: benches/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]   (default: 300 s each, every target)
# A crash leaves its input in benches/fuzz/artifacts/<target>/: fix it, and keep the input as a regression
# test beside the decoder.
set -euo pipefail
cd "$(dirname "$0")/fuzz"
ROOT=../..
SECONDS_EACH=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf onnx_rewrite cache_codec kserve_tensor chat_template)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --version 0.13.2 --locked

# Seeds: real files where there are some.
mkdir -p corpus/gguf corpus/onnx_rewrite corpus/chat_template corpus/kserve_tensor corpus/cache_codec
gguf="$ROOT/assets/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$gguf" ] && head -c 65536 "$gguf" > corpus/gguf/smollm2-head.gguf
for model in "$ROOT"/assets/onnx-light/*.onnx; do
  [ -f "$model" ] && [ "$(stat -c %s "$model")" -lt 300000 ] && cp "$model" corpus/onnx_rewrite/
done
printf '%s\0%s\0%s' \
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}" \
  "You are helpful." "Hello!" > corpus/chat_template/chatml
printf '\x0a\x00\x00\x80\x3f\x00\x00\x00\x40' > corpus/kserve_tensor/fp32-pair
printf '\x0c\x03\x00\x00\x00abc' > corpus/kserve_tensor/bytes-one

# Build every target first (one cargo run), then run the binaries: editing the tree meanwhile cannot change
# what is fuzzed.
cargo +nightly fuzz build
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release
for target in "${TARGETS[@]}"; do
  echo "== $target: ${SECONDS_EACH}s"
  mkdir -p artifacts/"$target"
  "$BIN/$target" corpus/"$target" -artifact_prefix=artifacts/"$target"/ \
    -max_total_time="$SECONDS_EACH" -max_len=1048576 -rss_limit_mb=4096 -timeout=20 -print_final_stats=1
done
