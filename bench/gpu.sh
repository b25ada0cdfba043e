#!/usr/bin/env bash
# The device check of issue 18 (bench/gpu.rs): ResNet-18 fp32 served with batching at
# batch 1, 8 and 32 against raw libtorch on the same GPU in the same run, and latency
# at concurrency 1. About a minute and a half on an H100/H200.
#
#   bench/gpu.sh prepare   here: builds the CUDA binary and the check (make build GPU=1,
#                          target/cuda) and copies both, stripped, into build/gpu/
#   bench/gpu.sh run [ARGS]  on the GPU machine (carry build/gpu): runs the check with
#                          the libtorch of that machine's Python (torch 2.11.0+cu130),
#                          which is the libtorch the binaries were built against;
#                          ARGS go to the check (--seconds N, --batches 1,8,32, ...)
#
# Without a GPU, `bench/gpu.sh run --device cpu --seconds 2 --batches 1,4` checks the
# mechanics on the CPU build's binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/gpu

case "${1:-}" in
  prepare)
    make build GPU=1
    export LIBTORCH="$PWD/.libtorch-cuda" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda}"
    check=$(cargo bench --bench gpu --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["executable"])')
    [ -x "$check" ] || { echo "could not build the check (cargo bench --bench gpu)" >&2; exit 1; }
    mkdir -p "$out"
    strip -o "$out/wasmserve" "$CARGO_TARGET_DIR/release/wasmserve"
    strip -o "$out/gpu-check" "$check"
    du -sh "$out"/*
    ;;
  run)
    shift
    [ -x "$out/wasmserve" ] && [ -x "$out/gpu-check" ] ||
      { echo "no $out/wasmserve or $out/gpu-check: run \`bench/gpu.sh prepare\` first" >&2; exit 1; }
    if [ -z "${LIBTORCH_LIB:-}" ]; then
      LIBTORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null ||
        readlink -f .libtorch-cuda/lib)
    fi
    echo "libtorch: $LIBTORCH_LIB"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    export LD_LIBRARY_PATH="$LIBTORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    WASMSERVE_BIN="$PWD/$out/wasmserve" exec "$out/gpu-check" "$@"
    ;;
  *)
    echo "usage: $0 prepare | run [ARGS]" >&2
    exit 2
    ;;
esac
