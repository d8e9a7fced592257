#!/usr/bin/env bash
# Installs the Redis server (Debian package `redis-server`) that tests/shared_cache.rs starts on a free loopback
# port. Nothing is started here, and the system service is not used.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "redis-server is missing and this user cannot install packages: install the Debian package redis-server" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
redis-server --version
