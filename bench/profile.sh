#!/usr/bin/env bash
# bench/profile.sh — where the CPU goes while a server is under load: `perf record` of the
# whole machine (cpu-clock sampling, so it works in a VM without hardware counters)
# while `ab` keeps concurrency 16 of kitten predictions going.
#
# Usage: bench/profile.sh [SECONDS]     (default 20 per case; run after `make bench`,
#                                        which installs TorchServe and makes the models)
#
# Cases, each written to bench/profiles/CASE.txt (the summary also to stdout):
#   wasmserve-mobilenet     mobilenet_v2_quantized, 2 workers (one per core), batch 1
#   wasmserve-resnet18-b1   the benchmark's float32 ResNet-18, batch 1
#   wasmserve-resnet18-b8   the same with batchSize 8, maxBatchDelay 20 ms
#   torchserve-mobilenet    TorchServe 0.12, tuned (OMP_NUM_THREADS=1), 2 workers
# Each file has the share of samples per process and library (`--sort comm,dso`) and the
# top symbols. wasmserve runs with WASMSERVE_PERFMAP=1, so the handlers' compiled wasm
# functions have names (perf reads /tmp/perf-PID.map).
#
# Needs: perf (Debian `linux-perf`), ab, a release build (`make build`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
ASSETS="${WASMSERVE_ASSETS:-$REPO/../shared/assets}"
CACHE="${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}/bench"
SECONDS_PER_CASE="${1:-20}"
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/wasmserve"
OUT="$REPO/bench/profiles"
KITTEN="$ASSETS/images/kitten.jpg"

log() { echo "[profile] $*" >&2; }
command -v perf >/dev/null || { log "perf not found (apt-get install linux-perf)"; exit 1; }
command -v ab >/dev/null || { log "ab not found (bench/torchserve/setup.sh installs it)"; exit 1; }
[ -x "$BIN" ] || { log "no $BIN: run make build"; exit 1; }
[ -s "$CACHE/resnet18.pt" ] || { log "no $CACHE/resnet18.pt: run make bench (or bench/torchserve/models.sh $CACHE)"; exit 1; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  "$HERE/torchserve/serve.sh" stop "$work/ts" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$OUT" "$work/store"

labels="$ASSETS/images/index_to_name.json"
printf 'batchSize: 8\nmaxBatchDelay: 20\n' >"$work/b8.yaml"
mk() { # NAME SERIALIZED [CONFIG]
  "$BIN" archive --model-name "$1" -v 1.0 --serialized-file "$2" --handler image_classifier \
    --extra-files "$labels" ${3:+-c "$3"} --export-path "$work/store" -f >/dev/null
}
mk mobilenet "$ASSETS/models/mobilenet_v2_quantized.pt"
mk resnet18 "$CACHE/resnet18.pt"
mk resnet18b8 "$CACHE/resnet18.pt" "$work/b8.yaml"
cores="$(nproc)"
cat >"$work/config.properties" <<EOF
inference_address=http://127.0.0.1:0
management_address=http://127.0.0.1:0
metrics_address=http://127.0.0.1:0
default_workers_per_model=$cores
EOF

# profile CASE URL: warm up, then record the whole machine while ab runs.
profile() {
  local name="$1" url="$2" file="$OUT/$1.txt"
  # Warm-up: 5 s of the same load (a JVM keeps compiling for a while).
  ab -q -k -c 16 -t 5 -n 1000000 -p "$KITTEN" -T application/octet-stream "$url" >/dev/null
  ab -q -k -c 16 -t $((SECONDS_PER_CASE + 5)) -n 1000000 -p "$KITTEN" \
    -T application/octet-stream "$url" >"$work/ab.txt" 2>&1 &
  local ab_pid=$!
  sleep 2
  perf record -q -a -F 499 -o "$work/perf.data" -- sleep "$SECONDS_PER_CASE" 2>/dev/null
  wait "$ab_pid" || true
  {
    echo "# $name: $(date -u '+%Y-%m-%d %H:%M UTC'), $cores cores, ${SECONDS_PER_CASE} s of perf record -a -F 499 under ab -k -c 16"
    grep -E '^(Requests per second|Failed requests)' "$work/ab.txt" || true
    echo
    echo "## samples by process and library"
    perf report -i "$work/perf.data" --stdio --no-children --sort comm,dso --percent-limit 0.5 2>/dev/null |
      grep -v '^#' | grep -v '^$'
    echo
    echo "## top symbols"
    perf report -i "$work/perf.data" --stdio --no-children --sort comm,dso,sym --percent-limit 0.7 2>/dev/null |
      grep -v '^#' | grep -v '^$' | cut -c1-160 | head -40
  } >"$file"
  log "wrote $file"
  sed -n '1,25p' "$file"
  echo
}

start_wasmserve() { # MODELS...
  WASMSERVE_PERFMAP=1 "$BIN" start --foreground --disable-token-auth --ncs \
    --model-store "$work/store" --ts-config "$work/config.properties" \
    --log-dir "$work/logs" --models "$@" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 600); do
    url="$(sed -n 's/^wasmserve: inference API on //p' "$work/server.out")"
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  log "wasmserve did not start:"; cat "$work/server.err" >&2; exit 1
}
stop_wasmserve() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

start_wasmserve mobilenet=mobilenet.mar resnet18=resnet18.mar resnet18b8=resnet18b8.mar
profile wasmserve-mobilenet "$url/predictions/mobilenet"
profile wasmserve-resnet18-b1 "$url/predictions/resnet18"
profile wasmserve-resnet18-b8 "$url/predictions/resnet18b8"
stop_wasmserve

if [ -d "$CACHE/ts-store" ]; then
  port=$((19000 + $$ % 1000 * 3))
  "$HERE/torchserve/serve.sh" start "$CACHE/ts-store" "$work/ts" "$cores" tuned "$port" mobilenet.mar >/dev/null
  profile torchserve-mobilenet "http://127.0.0.1:$port/predictions/mobilenet"
fi
