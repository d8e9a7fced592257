#!/usr/bin/env bash
# Builds the CUDA-enabled ferroserve binary (GPU lanes, device = "cuda:N") on a machine without a system
# CUDA toolkit or GPU: the compiler, headers and libraries come from NVIDIA's pinned PyPI wheels (CUDA 13.0,
# matching the GPU machines' driver), unpacked into assets/cuda. The linker gets a stub libcuda.so made
# from the symbols the code references; the real driver library is loaded at run time. Never ship the stub.
#
# Usage: deploy/build-cuda.sh            -> target/cuda/release/ferroserve (+ a stripped copy, ferroserve-cuda)
# Env:   CUDA_COMPUTE_CAP (default 90: H100/H200), ASSETS (default assets)
# Run:   LD_LIBRARY_PATH=/usr/local/cuda/lib64 ferroserve-cuda serve ...   (on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."

ASSETS=${ASSETS:-assets}
CUDA_ROOT="$ASSETS/cuda"
export CUDA_HOME="$PWD/$CUDA_ROOT/nvidia/cu13"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}

wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
)

if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "[1/4] CUDA 13.0 toolkit from wheels -> $CUDA_ROOT"
  mkdir -p "$CUDA_ROOT/wheels"
  python3 -m pip download --progress-bar on --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CUDA_ROOT/wheels" "${wheels[@]}"
  for w in "$CUDA_ROOT"/wheels/*.whl; do python3 -m zipfile -e "$w" "$CUDA_ROOT"; done
  chmod +x "$CUDA_HOME"/bin/* "$CUDA_HOME"/nvvm/bin/* 2>/dev/null || true
else
  echo "[1/4] CUDA 13.0 toolkit: already in $CUDA_ROOT"
fi

# Unversioned names for the linker (libcublas.so -> libcublas.so.13, ...).
for lib in "$CUDA_HOME"/lib/lib*.so.*; do
  base="${lib%%.so.*}.so"
  [ -e "$base" ] || ln -sf "$(basename "$lib")" "$base"
done
export PATH="$CUDA_HOME/bin:$PATH"
export LIBRARY_PATH="$CUDA_HOME/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# stub_libcuda SYMBOLS...: a libcuda.so (soname libcuda.so.1) defining each symbol as an empty function.
stub_libcuda() {
  local src="$CUDA_ROOT/libcuda-stub.c"
  : > "$src"
  for s in "$@"; do echo "void $s(void) {}" >> "$src"; done
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_HOME/lib/libcuda.so" "$src"
}

echo "[2/4] first build (stub driver library without symbols)"
[ -e "$CUDA_HOME/lib/libcuda.so" ] || stub_libcuda
if cargo build --release --features cuda --bin ferroserve 2> "$CUDA_ROOT/build.log"; then
  echo "[3/4] linked at the first try"
else
  echo "[3/4] stub with the driver symbols the code references, then link"
  mapfile -t symbols < <(for r in "$CARGO_TARGET_DIR"/release/deps/libcudarc-*.rlib; do nm -u "$r" 2>/dev/null; done \
    | awk '$1 == "U" && $2 ~ /^cu[A-Z]/ {print $2}' | sort -u)
  echo "      ${#symbols[@]} symbols"
  stub_libcuda "${symbols[@]}"
  cargo build --release --features cuda --bin ferroserve 2> "$CUDA_ROOT/build.log" || { tail -40 "$CUDA_ROOT/build.log"; exit 1; }
fi
strip -o "$CARGO_TARGET_DIR/release/ferroserve-cuda" "$CARGO_TARGET_DIR/release/ferroserve"
echo "[4/4] $CARGO_TARGET_DIR/release/ferroserve-cuda ($(du -h "$CARGO_TARGET_DIR/release/ferroserve-cuda" | cut -f1))"
