#!/usr/bin/env bash
# Produces the default repository's ONNX variants of all-MiniLM-L6-v2 from the fetched checkpoint, with the
# given ferroserve binary: assets/all-MiniLM-L6-v2-onnx (FP32 export), -onnx-fp16 and -onnx-int8 (dynamic
# INT8, per channel). Idempotent: what is in place is kept.
# Usage: deploy/make-variants.sh FERROSERVE_BIN [ASSETS_DIR]
set -euo pipefail
bin=$1
assets=${2:-assets}
ckpt="$assets/all-MiniLM-L6-v2"
if [ -e "$assets/all-MiniLM-L6-v2-onnx/model.onnx" ]; then
  echo "variant onnx: already in place"
else
  "$bin" export onnx --checkpoint "$ckpt" --output "$assets/all-MiniLM-L6-v2-onnx.partial"
  rm -rf "$assets/all-MiniLM-L6-v2-onnx" && mv "$assets/all-MiniLM-L6-v2-onnx.partial" "$assets/all-MiniLM-L6-v2-onnx"
fi
for variant in int8 fp16; do
  out="$assets/all-MiniLM-L6-v2-onnx-$variant"
  if [ -e "$out/model.onnx" ]; then
    echo "variant onnx-$variant: already in place"
  else
    "$bin" quantize --model "$assets/all-MiniLM-L6-v2-onnx" --output "$out.partial" --to "$variant"
    rm -rf "$out" && mv "$out.partial" "$out"
  fi
done
