#!/usr/bin/env bash
# bench/torchserve/setup.sh — install TorchServe 0.12.0 for the wasmserve-vs-TorchServe benchmark.
#
# Usage: bench/torchserve/setup.sh            (no arguments)
#
# Creates a Python venv in ${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}/torchserve-0.12.0 with
#   torchserve==0.12.0 torch-model-archiver==0.12.0 torch==2.11.0 torchvision==0.26.0
#   pillow numpy psutil packaging pyyaml captum
# (captum is not optional: TorchServe's vision/text handlers import it at load time, and
# without it every image_classifier worker dies with "No module named 'captum'").
# torch/torchvision come from the CPU-only index (https://download.pytorch.org/whl/cpu) when
# it is reachable, otherwise from PyPI (the CUDA build with its nvidia-* wheels, several GB;
# it runs fine on CPU). Also installs the load generator `ab` (Debian apache2-utils) when it
# is missing.
#
# Idempotent: an flock on a lock file serialises concurrent runs and a marker file inside
# the venv (holding the package list) makes a second run a no-op. Progress goes to stderr;
# the last line on stdout is the venv path.
#
# Environment: WASMSERVE_CACHE (cache root), PYTHON (interpreter for the venv, default python3),
#              TORCH_CPU_INDEX (CPU wheel index URL; set it empty to skip the probe).
set -euo pipefail

CACHE="${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}"
VENV="$CACHE/torchserve-0.12.0"
LOCK="$CACHE/torchserve-0.12.0.lock"
MARKER="$VENV/.wasmserve-setup-done"
PYTHON="${PYTHON:-python3}"
CPU_INDEX="${TORCH_CPU_INDEX-https://download.pytorch.org/whl/cpu}"

TORCH_PKGS=(torch==2.11.0 torchvision==0.26.0)
OTHER_PKGS=(torchserve==0.12.0 torch-model-archiver==0.12.0 pillow numpy psutil packaging pyyaml captum)
SPEC="${TORCH_PKGS[*]} ${OTHER_PKGS[*]}"

log() { echo "[torchserve/setup] $*" >&2; }

# Run as root directly, otherwise through sudo when it exists.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

install_ab() {
  command -v ab >/dev/null && return 0
  log "installing apache2-utils (ab)"
  export DEBIAN_FRONTEND=noninteractive
  # Try without refreshing the package lists first; update and retry if that fails.
  if ! as_root nice -n 19 apt-get install -y --no-install-recommends apache2-utils >&2; then
    as_root nice -n 19 apt-get update >&2
    as_root nice -n 19 apt-get install -y --no-install-recommends apache2-utils >&2
  fi
  command -v ab >/dev/null
}

venv_ready() { [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$SPEC" ]; }

# Fast path: nothing to do, no lock needed.
if venv_ready && command -v ab >/dev/null; then
  echo "$VENV"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$LOCK"
log "waiting for lock $LOCK"
flock 9

install_ab

if venv_ready; then
  log "venv already installed (found by a concurrent run)"
else
  start=$(date +%s)
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
  fi
  PIP=(nice -n 19 "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input)
  "${PIP[@]}" --upgrade pip >&2

  source_desc="PyPI (CUDA build of torch, runs on CPU)"
  torch_index=()
  if [ -n "$CPU_INDEX" ] && "$VENV/bin/python" - "$CPU_INDEX/torch/" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10).read(1)
PY
    source_desc="the CPU-only index $CPU_INDEX"
    torch_index=(--index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple)
  fi
  log "installing ${TORCH_PKGS[*]} from $source_desc"
  "${PIP[@]}" "${torch_index[@]}" "${TORCH_PKGS[@]}" >&2
  log "installing ${OTHER_PKGS[*]} from PyPI"
  "${PIP[@]}" "${TORCH_PKGS[@]}" "${OTHER_PKGS[@]}" >&2

  # Sanity check before declaring success.
  "$VENV/bin/python" -c 'import torch, torchvision, ts, model_archiver, captum.attr; print("torch", torch.__version__, "torchvision", torchvision.__version__)' >&2
  [ -x "$VENV/bin/torchserve" ] && [ -x "$VENV/bin/torch-model-archiver" ]
  echo "$SPEC" > "$MARKER"
  log "installed in $(( $(date +%s) - start )) s from $source_desc; venv uses $(du -sh "$VENV" | cut -f1)"
fi

echo "$VENV"
