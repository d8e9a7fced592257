#!/usr/bin/env bash
# Produces the default repository's ONNX variants of all-MiniLM-L6-v2 from the fetched checkpoint, with the
# given ferroserve binary: assets/all-MiniLM-L6-v2-onnx (FP32 export) and assets/all-MiniLM-L6-v2-onnx-int8
# (dynamic INT8, per channel). Idempotent: what is in place is kept.
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
if [ -e "$assets/all-MiniLM-L6-v2-onnx-int8/model.onnx" ]; then
  echo "variant onnx-int8: already in place"
else
  "$bin" quantize --model "$assets/all-MiniLM-L6-v2-onnx" --output "$assets/all-MiniLM-L6-v2-onnx-int8.partial" --to int8
  rm -rf "$assets/all-MiniLM-L6-v2-onnx-int8" && mv "$assets/all-MiniLM-L6-v2-onnx-int8.partial" "$assets/all-MiniLM-L6-v2-onnx-int8"
fi
