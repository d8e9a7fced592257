#!/usr/bin/env bash
# Builds the web console's script (serve/ui/dist/app.js, which the binary embeds) from src/*.ts: installs the
# pinned TypeScript and esbuild from package-lock.json when they are missing or changed, type-checks, bundles.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: install Node.js with npm to build the web console (serve/ui)" >&2
  exit 1
fi
if [ ! -f node_modules/.installed ] || ! cmp -s package-lock.json node_modules/.installed; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed
fi
npm run --silent build
