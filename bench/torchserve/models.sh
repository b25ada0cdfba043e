#!/usr/bin/env bash
# bench/torchserve/models.sh — build the benchmark models and TorchServe archives.
#
# Usage: bench/torchserve/models.sh OUT_DIR
#
# Writes, using the venv from setup.sh (run first if needed):
#   OUT_DIR/resnet18.pt            torchvision resnet18(weights=None), torch.manual_seed(0),
#                                  eval, float32, torch.jit.trace on 1x3x224x224, torch.jit.save
#   OUT_DIR/ts-store/mobilenet.mar $WASMSERVE_ASSETS/models/mobilenet_v2_quantized.pt
#   OUT_DIR/ts-store/resnet18.mar  OUT_DIR/resnet18.pt
# Both archives: version 1.0, --handler image_classifier,
# --extra-files $WASMSERVE_ASSETS/images/index_to_name.json.
# Idempotent: an existing output is kept unless one of its inputs is newer.
#
# Environment: WASMSERVE_ASSETS (default: <repo root>/../shared/assets), plus those of setup.sh.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
ASSETS="${WASMSERVE_ASSETS:-$REPO_ROOT/../shared/assets}"
OUT="$1"
STORE="$OUT/ts-store"
INDEX_JSON="$ASSETS/images/index_to_name.json"
MOBILENET_PT="$ASSETS/models/mobilenet_v2_quantized.pt"

log() { echo "[torchserve/models] $*" >&2; }

for f in "$INDEX_JSON" "$MOBILENET_PT"; do
  [ -f "$f" ] || { log "missing asset $f (set WASMSERVE_ASSETS)"; exit 1; }
done

VENV="$("$HERE/setup.sh" | tail -n 1)"
mkdir -p "$STORE"

# up_to_date OUTPUT INPUT... : OUTPUT exists and no INPUT is newer than it.
up_to_date() {
  local out="$1"; shift
  [ -s "$out" ] || return 1
  local in
  for in in "$@"; do [ "$in" -nt "$out" ] && return 1; done
  return 0
}

RESNET_PT="$OUT/resnet18.pt"
if [ -s "$RESNET_PT" ]; then
  log "keeping $RESNET_PT"
else
  log "tracing resnet18 -> $RESNET_PT"
  nice -n 19 "$VENV/bin/python" - "$RESNET_PT" <<'PY'
import os, sys
import torch, torchvision

out = sys.argv[1]
torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None).eval().float()
example = torch.rand(1, 3, 224, 224)
with torch.no_grad():
    traced = torch.jit.trace(model, example)
tmp = out + ".tmp"
torch.jit.save(traced, tmp)
os.replace(tmp, out)
PY
fi

# archive NAME SERIALIZED_FILE
archive() {
  local name="$1" serialized="$2" mar="$STORE/$1.mar"
  if up_to_date "$mar" "$serialized" "$INDEX_JSON"; then
    log "keeping $mar"
    return
  fi
  log "archiving $name -> $mar"
  nice -n 19 "$VENV/bin/torch-model-archiver" \
    --model-name "$name" --version 1.0 \
    --serialized-file "$serialized" \
    --handler image_classifier \
    --extra-files "$INDEX_JSON" \
    --export-path "$STORE" --force
}

archive mobilenet "$MOBILENET_PT"
archive resnet18 "$RESNET_PT"

ls -l "$RESNET_PT" "$STORE"/*.mar >&2
