#!/usr/bin/env bash
# The main job: archive MobileNetV2 (int8) with the built-in image_classifier, start the
# server, classify the kitten, stop the server.
#
#   WASMSERVE_ASSETS  the shared assets folder (default: ../shared/assets)
#   WASMSERVE_BIN     the wasmserve binary (default: target/release/wasmserve)
set -euo pipefail
cd "$(dirname "$0")/.."

assets="${WASMSERVE_ASSETS:-../shared/assets}"
bin="${WASMSERVE_BIN:-${CARGO_TARGET_DIR:-target}/release/wasmserve}"
store="$(mktemp -d)"
export WASMSERVE_PID_FILE="$store/wasmserve.pid"
cleanup() { "$bin" stop >/dev/null 2>&1 || true; rm -rf "$store"; }
trap cleanup EXIT

echo "== archive"
"$bin" archive --model-name mobilenet -v 1.0 \
  --serialized-file "$assets/models/mobilenet_v2_quantized.pt" \
  --handler image_classifier \
  --extra-files "$assets/images/index_to_name.json" \
  --export-path "$store"

echo "== start"
cfg="$store/config.properties"
port="${WASMSERVE_DEMO_PORT:-8080}"
printf 'inference_address=http://127.0.0.1:%s\nmanagement_address=http://127.0.0.1:%s\nmetrics_address=http://127.0.0.1:%s\nkey_file=%s\n' \
  "$port" "$((port + 1))" "$((port + 2))" "$store/key_file.json" > "$cfg"
"$bin" start --model-store "$store" --models mobilenet=mobilenet.mar --ts-config "$cfg" --log-dir "$store/logs"

echo "== predict kitten.jpg"
# Token authorization is on (TorchServe 0.11+): the inference key is in key_file.json.
key="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["inference"]["key"])' "$store/key_file.json")"
curl -sS --fail-with-body -X POST "http://127.0.0.1:${port}/predictions/mobilenet" \
  -H "Authorization: Bearer $key" -T "$assets/images/kitten.jpg" | python3 -m json.tool

echo "== stop"
"$bin" stop
