# Shared by the benchmark scripts (source it from the repository root): start a ferroserve on the bench
# ports and wait until it is ready, stop it (also on exit), and describe the machine in one line.
#   start_server LOG ARGS...   runs `$bin serve ARGS` (bin: target/release/ferroserve unless set), sets $server
#   stop_server
#   machine                    CPU, cores, memory and the SIMD flags that decide kernel speed
#   minilm_repository DIR      a model repository in DIR with only all-MiniLM-L6-v2 (Candle)

BENCH_HTTP_PORT=${BENCH_HTTP_PORT:-18080}
BENCH_GRPC_PORT=${BENCH_GRPC_PORT:-15051}
BENCH_URL="http://127.0.0.1:$BENCH_HTTP_PORT"
server=

start_server() {
  local log=$1
  shift
  "${bin:-target/release/ferroserve}" serve --http-addr "127.0.0.1:$BENCH_HTTP_PORT" \
    --grpc-addr "127.0.0.1:$BENCH_GRPC_PORT" "$@" > "$log" 2>&1 &
  server=$!
  for _ in $(seq 1200); do
    curl -sf "$BENCH_URL/ready" > /dev/null && return 0
    if ! kill -0 "$server" 2> /dev/null; then
      echo "the server exited; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the server was not ready in 120 s; log: $log" >&2
  exit 1
}

stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2> /dev/null || true
    wait "$server" 2> /dev/null || true
    server=
  fi
}
trap stop_server EXIT

machine() {
  local cpu flags
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
  flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
    grep -xE 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx_vnni|avx512_bf16|avx512_fp16|amx_tile|amx_int8|amx_bf16' |
    tr '\n' ' ' | sed 's/ $//')
  echo "$cpu, $(nproc) cores, $(awk '/MemTotal/ {printf "%d GiB", $2/1048576+0.5}' /proc/meminfo), flags: ${flags:-none}"
}

minilm_repository() {
  mkdir -p "$1"
  printf 'name = "all-MiniLM-L6-v2"\ntask = "embedding"\nbackend = "candle"\npath = "%s"\n' \
    "$(realpath assets/all-MiniLM-L6-v2)" > "$1/minilm.toml"
}
