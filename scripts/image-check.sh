#!/usr/bin/env bash
# Checks the container image end to end with podman (`make image-check`; not part of
# `make test`: it needs podman and the image from `make image`):
#
#   scripts/image-check.sh [IMAGE]        (default localhost/wasmserve:latest)
#
# 1. A model store in KServe's TorchServe layout is made in a temporary folder:
#    config/config.properties is deploy/kserve/config.properties as it is (load_models=all,
#    inference on 0.0.0.0:8080, metrics on 8082, gRPC on 7070); model-store/ holds the
#    shared MobileNetV2 archived with the built-in image_classifier (mobilenet.mar), and
#    the same model with batchSize 2 and maxBatchDelay 3000 (slow.mar: a lone request
#    waits 3 s in the batcher, so it is surely in flight when the stop comes).
# 2. The image runs with the image's own command, the store mounted read-only at
#    /mnt/models (podman run --network=host): the check waits for /v2/health/ready, times
#    start-to-ready, classifies kitten.jpg over /predictions and KServe v1 (tabby first),
#    asks gRPC's port for a connection, scrapes /metrics (the predictions counted), and
#    reads the server's log from the container's stdout.
# 3. A request to `slow` is sent, then `podman stop` (SIGTERM): the request must be
#    answered (200, tabby), the container exit with status 0, before podman's timeout.
# 4. The storage of a kserve-torchserve InferenceService, as it is: TorchServe's KServe
#    sample config.properties (tests/fixtures/kserve-torchserve.config.properties, with
#    inference and management on 127.0.0.1:8085 and its model_snapshot of mnist.mar) and
#    mnist.mar (vit4mnist with the mnist_handler example). The image's own command pins
#    the ports the runtime declares, so the digit is classified on 8080, where KServe
#    sends traffic, and the management API answers on the sample's 8085.
# 5. `podman kube play` of deploy/k8s/ (ConfigMap, Deployment; the PVC `wasmserve-models`
#    is a podman volume filled with the model store): the pod must become ready and
#    classify the kitten; then `podman kube down`. The Deployment is played with
#    `replicas: 1` (podman publishes each pod's containerPorts on the host, so a second
#    pod could not bind them) and slirp4netns networking (podman refuses port mappings on
#    the host network). Podman turns the liveness probe into a healthcheck that runs curl
#    in the container, which the image has not (and podman runs healthchecks only with
#    systemd): the check polls the readiness path itself.
#
# The ports are the manifests' (8080, 8081, 8082, 7070, 7071, and the sample's 8085, on the
# host network): they
# must be free. WASMSERVE_ASSETS: the shared assets (default ../shared/assets).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/containers-env.sh
. scripts/containers-env.sh

image=${1:-localhost/wasmserve:latest}
assets=${WASMSERVE_ASSETS:-$root/../shared/assets}
bin=target/release/wasmserve
name=wasmserve-image-check
http=http://127.0.0.1:8080

say() { echo "image-check: $*"; }
fail() { echo "image-check: FAILED: $*" >&2; exit 1; }

podman image exists "$image" || fail "no image $image: run make image"
[ -x "$bin" ] || fail "no $bin (the archives are made with it): run make build"
[ -f "$assets/models/mobilenet_v2_quantized.pt" ] || fail "no shared assets at $assets"
for port in 8080 8081 8082 8085 7070 7071; do
  if ss -ltnH "sport = :$port" | grep -q .; then fail "port $port is in use"; fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wasmserve-image-check.XXXXXX")
cleanup() {
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  [ ! -f "$tmp/deployment.yaml" ] || podman kube down "$tmp/deployment.yaml" >/dev/null 2>&1 || true
  podman volume rm -f wasmserve-models wasmserve-config wasmserve-home wasmserve-tmp >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cleanup_first() { podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; }
cleanup_first

# ---- 1. the model store -----------------------------------------------------------------
store=$tmp/models
mkdir -p "$store/config" "$store/model-store"
cp deploy/kserve/config.properties "$store/config/config.properties"
"$bin" archive --model-name mobilenet -v 1.0 \
  --serialized-file "$assets/models/mobilenet_v2_quantized.pt" \
  --handler image_classifier --extra-files "$assets/images/index_to_name.json" \
  --export-path "$store/model-store" >/dev/null
printf 'batchSize: 2\nmaxBatchDelay: 3000\n' >"$tmp/slow.yaml"
"$bin" archive --model-name slow -v 1.0 \
  --serialized-file "$assets/models/mobilenet_v2_quantized.pt" \
  --handler image_classifier --extra-files "$assets/images/index_to_name.json" \
  -c "$tmp/slow.yaml" --export-path "$store/model-store" >/dev/null
# The container's user (uid 1000) reads the store.
chmod -R a+rX "$tmp"

wait_ready() { # URL SECONDS [CONTAINER] -> prints the seconds it took
  local start end
  start=$(date +%s.%N)
  end=$(($(date +%s) + $2))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ]; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    if [ -n "${3:-}" ] && [ "$(podman inspect -f '{{.State.Running}}' "$3")" != true ]; then
      return 1
    fi
    sleep 0.1
  done
  since "$start"
}

since() { # START (date +%s.%N) -> seconds since, two decimals
  awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

top_class() { # JSON on stdin -> the first key of the first object
  python3 -c 'import json,sys
d = json.load(sys.stdin)
d = d["predictions"][0] if "predictions" in d else d
print(next(iter(d)))'
}

# ---- 2. run it --------------------------------------------------------------------------
size=$(podman image inspect --format '{{.Size}}' "$image")
say "image $image: $((size / 1000000)) MB"
t0=$(date +%s.%N)
podman run -d --name "$name" --network=host -v "$store:/mnt/models:ro" "$image" >/dev/null
if ! wait_ready "$http/v2/health/ready" 120 "$name" >/dev/null; then
  podman logs "$name" >&2 || true
  fail "/v2/health/ready did not answer 200 within 120 s (or the container exited)"
fi
ready=$(since "$t0")
say "start to ready (podman run to /v2/health/ready 200): ${ready} s"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$http/v2/health/live")" = 200 ] || fail "/v2/health/live"

uid=$(stat -c %u "/proc/$(podman inspect -f '{{.State.Pid}}' "$name")")
[ "$uid" = 1000 ] || fail "the server runs as uid $uid, not 1000"

answer=$(curl -sf -X POST "$http/predictions/mobilenet" -T "$assets/images/kitten.jpg") \
  || fail "/predictions/mobilenet"
[ "$(echo "$answer" | top_class)" = tabby ] || fail "/predictions/mobilenet: $answer"
say "/predictions/mobilenet: $answer"
printf '{"instances": [{"data": "%s"}]}' "$(base64 -w0 "$assets/images/kitten.jpg")" >"$tmp/v1.json"
answer=$(curl -sf "$http/v1/models/mobilenet:predict" -H 'Content-Type: application/json' \
  -d @"$tmp/v1.json") || fail "KServe v1 predict"
[ "$(echo "$answer" | top_class)" = tabby ] || fail "KServe v1 predict: $answer"
say "KServe v1 :predict: tabby first"
[ "$(curl -sf "$http/v2/models/mobilenet/ready" -o /dev/null -w '%{http_code}')" = 200 ] \
  || fail "/v2/models/mobilenet/ready"
# gRPC: the port accepts an HTTP/2 connection (prior knowledge) and answers.
curl -s --http2-prior-knowledge -o /dev/null -X POST \
  -H 'content-type: application/grpc' http://127.0.0.1:7070/inference.GRPCInferenceService/ServerLive \
  || fail "no HTTP/2 answer on the gRPC port 7070"
metrics=$(curl -sf http://127.0.0.1:8082/metrics) || fail "/metrics"
echo "$metrics" | grep -q '^ts_inference_requests_total{.*model_name="mobilenet".*} [1-9]' \
  || fail "/metrics does not count the predictions: $(echo "$metrics" | grep ts_inference_requests_total)"
say "metrics: $(echo "$metrics" | grep '^ts_inference_requests_total{.*mobilenet' | head -1)"
logs=$(podman logs "$name" 2>/dev/null)
echo "$logs" | grep -q 'inference API on http://0.0.0.0:8080' || fail "the stdout log lacks the listener lines"
echo "$logs" | grep -q 'INFO' || fail "the server's log is not on stdout: $logs"
say "log on stdout: $(echo "$logs" | wc -l) lines"

# ---- 3. SIGTERM with a request in flight ------------------------------------------------
curl -s -o "$tmp/slow.json" -w '%{http_code}' -X POST "$http/predictions/slow" \
  -T "$assets/images/kitten.jpg" >"$tmp/slow.code" &
inflight=$!
sleep 1
t1=$(date +%s.%N)
podman stop -t 25 "$name" >/dev/null
stop=$(since "$t1")
wait "$inflight" || true
code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
[ "$(cat "$tmp/slow.code")" = 200 ] || fail "the request in flight got $(cat "$tmp/slow.code"): $(cat "$tmp/slow.json")"
[ "$(top_class <"$tmp/slow.json")" = tabby ] || fail "the request in flight: $(cat "$tmp/slow.json")"
[ "$code" = 0 ] || { podman logs --tail 20 "$name" >&2; fail "exit status $code after SIGTERM"; }
awk -v s="$stop" 'BEGIN { exit !(s < 25) }' || fail "podman stop took ${stop} s: killed, not stopped"
podman logs "$name" 2>/dev/null | grep -q 'stopped' || fail "no 'stopped' in the log"
say "SIGTERM: the request in flight answered 200 (tabby), exit status 0, stop took ${stop} s"
podman rm "$name" >/dev/null

# ---- 4. KServe's TorchServe storage as it is ------------------------------------------
guests=target/guests/wasm32-wasip2/guest
[ -f "$guests/mnist_handler.wasm" ] || fail "no $guests/mnist_handler.wasm: run make build"
ts=$tmp/kserve-torchserve
mkdir -p "$ts/config" "$ts/model-store"
cp tests/fixtures/kserve-torchserve.config.properties "$ts/config/config.properties"
"$bin" archive --model-name mnist -v 1.0 --serialized-file "$assets/models/vit4mnist.ptl" \
  --handler "$guests/mnist_handler.wasm" --export-path "$ts/model-store" >/dev/null
chmod -R a+rX "$ts"
podman run -d --name "$name" --network=host -v "$ts:/mnt/models:ro" "$image" >/dev/null
if ! wait_ready "$http/v2/health/ready" 120 "$name" >/dev/null; then
  podman logs "$name" >&2 || true
  fail "KServe's TorchServe sample: /v2/health/ready did not answer 200 on 8080 within 120 s"
fi
digit=$(curl -sf -X POST "$http/predictions/mnist" -T "$assets/images/mnist/7.png") \
  || fail "KServe's TorchServe sample: /predictions/mnist on 8080"
[ "$digit" = 7 ] || fail "KServe's TorchServe sample: /predictions/mnist answered $digit, not 7"
described=$(curl -sf http://127.0.0.1:8085/models/mnist) \
  || fail "KServe's TorchServe sample: the management API on the sample's 8085"
echo "$described" | grep -q '"batchSize": 5' \
  || fail "KServe's TorchServe sample: the snapshot's batchSize 5 is not the model's: $described"
podman rm -f -t 10 "$name" >/dev/null
say "KServe's TorchServe sample config, unchanged: ready on 8080, the digit 7 classified, management on 8085 (batchSize 5 from its model_snapshot)"

# ---- 5. podman kube play of deploy/k8s --------------------------------------------------
podman volume create wasmserve-models >/dev/null
vol=$(podman volume inspect -f '{{.Mountpoint}}' wasmserve-models)
cp -a "$store/model-store/." "$vol/"
chmod -R a+rX "$vol"
sed 's/^  replicas: .*/  replicas: 1/' deploy/k8s/deployment.yaml >"$tmp/deployment.yaml"
grep -q '^  replicas: 1$' "$tmp/deployment.yaml" || fail "deploy/k8s/deployment.yaml has no spec.replicas"
t2=$(date +%s.%N)
podman kube play --network slirp4netns --configmap deploy/k8s/configmap.yaml \
  "$tmp/deployment.yaml" >"$tmp/play.log" 2>&1 || { cat "$tmp/play.log" >&2; fail "podman kube play"; }
if ! wait_ready "$http/v2/health/ready" 120 >/dev/null; then
  podman pod ps >&2; podman ps -a >&2
  podman logs "$(podman ps -a --filter label=io.kubernetes.pod.name --format '{{.Names}}' | head -1)" >&2 || true
  fail "the kube-played pod did not become ready within 120 s"
fi
kready=$(since "$t2")
answer=$(curl -sf -X POST "$http/predictions/mobilenet" -T "$assets/images/kitten.jpg") \
  || fail "kube play: /predictions/mobilenet"
[ "$(echo "$answer" | top_class)" = tabby ] || fail "kube play: /predictions/mobilenet: $answer"
say "podman kube play deploy/k8s: ready in ${kready} s, /predictions/mobilenet: tabby first"
podman kube down "$tmp/deployment.yaml" >/dev/null
say "all checks passed"
