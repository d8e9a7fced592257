#!/usr/bin/env bash
# Creates tests/.venv with the pinned client packages. Falls back to `pip install --target` where the
# python3 on the machine has no venv module (Debian without python3-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/../.venv"
req="$here/requirements.txt"
stamp="$venv/.installed"
if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then exit 0; fi
rm -rf "$venv"
if python3 -m venv "$venv" 2>/dev/null && [ -x "$venv/bin/pip" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
else
  echo "python3 has no venv module: installing the test clients with pip --target" >&2
  rm -rf "$venv" && mkdir -p "$venv/bin" "$venv/site"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --target "$venv/site" -r "$req"
  printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 "$@"\n' "$venv/site" > "$venv/bin/python"
  chmod +x "$venv/bin/python"
fi
cp "$req" "$stamp"
