#!/usr/bin/env bash
# Installs the Debian packages the tests use when their commands are missing: the Redis server that
# tests/shared_cache.rs starts on a free loopback port (nothing is started here, the system service is not
# used), curl (the client of the compression tests), openssl (test certificates), Chromium (the headless
# browser the web console's tests drive through Playwright) and QEMU's user-mode emulator (tests/other-cpus.sh
# runs the SIMD tests on emulated CPUs without AVX-512 and without AVX).
set -euo pipefail

declare -A packages=([redis-server]=redis-server [curl]=curl [openssl]=openssl [chromium]=chromium [qemu-x86_64]=qemu-user)
missing=()
for command in "${!packages[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "missing Debian packages and this user cannot install them: ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
redis-server --version
