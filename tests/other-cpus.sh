#!/usr/bin/env bash
# Runs the tests of the code that picks its instructions at run time (the LLM kernels, vector distances and
# INT8 codes, the weight format of INT8 ONNX models, ONNX Runtime itself) as CPUs without AVX-512 (Haswell: AVX2 + FMA) and without
# AVX (Nehalem) would, under QEMU's user-mode emulator, whose CPU models hide the features they lack. `cargo test`
# runs every path this machine has natively; this runs the dispatch of the machines it is not.
# Usage: tests/other-cpus.sh (after `cargo test --workspace` has built the test binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}

if ! command -v qemu-x86_64 >/dev/null 2>&1; then
    echo "qemu-x86_64 is missing: run tests/setup-packages.sh" >&2
    exit 1
fi
if [ "$(uname -m)" != x86_64 ]; then
    echo "not an x86-64 machine: nothing to emulate"
    exit 0
fi

# The test binaries cargo already built: "<target> <kind> <executable> <package folder>" per line.
binaries=$("$CARGO" test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["target"]["kind"][0], m["executable"], os.path.dirname(m["manifest_path"]))
')

# Runs one test binary under the emulated CPU, from its package folder as cargo does. The binary is named by
# target and kind, the target prefixed with its package folder where two packages have one of that name
# (models/onnx).
run() {
    local cpu=$1 target=$2 kind=$3 folder_suffix=""
    shift 3
    if [[ $target == */* ]]; then
        folder_suffix=/${target%/*}
        target=${target##*/}
    fi
    local line
    line=$(awk -v t="$target" -v k="$kind" -v f="$folder_suffix" \
        '$1 == t && $2 == k && substr($4, length($4) - length(f) + 1) == f' <<<"$binaries" | head -n 1)
    if [ -z "$line" ]; then
        echo "no $kind test binary named $target: build the tests first (cargo test --workspace --no-run)" >&2
        exit 1
    fi
    read -r _ _ executable folder <<<"$line"
    echo "== $cpu: $target ($kind) $*"
    # QEMU warns about each CPUID bit of the model it does not emulate (none of them matter to user code).
    (cd "$folder" && qemu-x86_64 -cpu "$cpu" "$executable" --test-threads 2 "$@") 2>&1 | grep -v "TCG doesn't support"
}

# The emulated CPU must hide what it claims to: the kernel test prints the families it found.
expect_families() {
    local cpu=$1 expected=$2 output
    output=$(run "$cpu" kernels test every_family_matches_the_scalar_reference_bit_for_bit --nocapture)
    echo "$output" | grep "kernel families"
    if ! grep -qF "kernel families on this CPU: $expected" <<<"$output"; then
        echo "$cpu should run the kernel families $expected" >&2
        echo "$output" >&2
        exit 1
    fi
}

start=$SECONDS
expect_families Haswell-v4 "[Scalar, Avx2]"
expect_families Nehalem "[Scalar]"
for cpu in Haswell-v4 Nehalem; do
    run "$cpu" kernels test -q
    run "$cpu" ferroserve_models lib -q
    run "$cpu" ferroserve lib -q vectors::distance vectors::quantize
    # ONNX Runtime picks its own kernels by CPU too: an embedding model and the generic tensor path.
    run "$cpu" models/onnx test -q embedding_path_pools_an_optimum_style_graph generic_path_refuses_bad_inputs_clearly
done
echo "tests on emulated CPUs without AVX-512 and without AVX passed in $((SECONDS - start)) s"
