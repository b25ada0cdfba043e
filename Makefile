# wasmserve: `make demo` runs the main job, `make test` the whole test suite.
# Each installs what it needs first (idempotent, cached outside the clone).

ASSETS ?= ../shared/assets
export WASMSERVE_ASSETS := $(abspath $(ASSETS))
CARGO ?= cargo

# GPU=1: the same targets against libtorch with CUDA (`make deps GPU=1`, `make build
# GPU=1`, `make test GPU=1`): the CUDA libtorch is linked at .libtorch-cuda and the build
# goes to target/cuda (an exported CARGO_TARGET_DIR wins), so that the CPU build in
# target/ is left as it is. Without a GPU the CUDA binary serves on the CPU.
GPU ?=
ifeq ($(GPU),1)
LIBTORCH_LINK := .libtorch-cuda
LIBTORCH_FLAGS := --cuda
export LIBTORCH := $(abspath .libtorch-cuda)
export CARGO_TARGET_DIR ?= $(abspath target/cuda)
else
LIBTORCH_LINK := .libtorch
LIBTORCH_FLAGS :=
endif

.PHONY: all deps build demo test lint fmt clean bench bench-v2 bench-grpc bench-pipeline bench-optimize bench-imaging bench-perf-analyzer bench-models balancer soak image image-check gpu-check

all: build

# libtorch 2.11.0 from the PyPI wheels (cached in ~/.cache/wasmserve; with GPU=1 the
# CUDA 13.0 build, ~4 GB) and the wasm targets (wasip2 for the handlers, wasip1 for the
# test of core modules made into components), and nasm for the JPEG decoder's SIMD.
deps:
	@ln -sfn "$$(./scripts/install-libtorch.sh $(LIBTORCH_FLAGS))" $(LIBTORCH_LINK)
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@command -v promtool >/dev/null || ./scripts/install-promtool.sh
	@command -v nasm >/dev/null || ./scripts/install-nasm.sh

build: deps
	$(CARGO) build --release

# Archive MobileNetV2 with the built-in image_classifier, serve it, classify the kitten.
demo: build
	./scripts/demo.sh

test: build
	$(CARGO) test --release -p wasmserve -p wasmserve-handler
	$(MAKE) lint
	$(CARGO) fmt --all -- --check

# Everything the speed section claims, each part printed and kept in bench/results/
# (about 25 minutes on 2 cores): the comparison with TorchServe 0.12 (installed into the
# cache on first use) and the native pipeline (bench/suite.rs), then the parts that also
# run alone below: jitOptimize, the image path against Pillow, perf_analyzer, many
# models; then bench/RESULTS.md assembled from them (summary table first), and the
# criterion micro-benchmark of the image_classifier handler, sandboxed against native.
BENCH_PARTS := suite optimize imaging perf_analyzer models
bench: build
	for part in $(BENCH_PARTS); do $(CARGO) bench --bench $$part || exit 1; done
	$(CARGO) bench --bench results
	$(CARGO) bench --bench handler_criterion

# The KServe v2 tensor path against the forward alone, and binary against JSON tensors
# (bench/v2.rs; about a minute).
bench-v2: build
	$(CARGO) bench --bench v2

# gRPC against REST on one server (the kitten: latency at concurrency 1, throughput at
# 16) and the streaming example's time to its first piece (bench/grpc.rs; about a minute).
bench-grpc: build
	$(CARGO) bench --bench grpc

# The example pipelines against the forwards they run, called directly, per request at
# concurrency 1 (bench/pipeline.rs; about a minute).
bench-pipeline: build
	$(CARGO) bench --bench pipeline

# The device check's binaries (bench/gpu.sh prepare: the CUDA build and bench/gpu.rs,
# stripped into build/gpu/), to carry to a GPU machine and run there with
# `bench/gpu.sh run` (ResNet-18 served with batching against raw libtorch).
gpu-check:
	./bench/gpu.sh prepare

# Many models on one server (bench/models.rs, about ten minutes): 1/10/50/100 always
# loaded (RSS, registration time, idle CPU, a busy model's p50), 1,000 with scaleToZero
# (cold RSS, first-request latency), and TorchServe to the same memory.
bench-models: build
	$(CARGO) bench --bench models
	$(CARGO) bench --bench results

# jitOptimize (bench/optimize.rs, about four minutes): ResNet-18 and MobileNetV2 forwards
# plain, frozen, optimize_for_inference and fused (oneDNN Graph) in turns, and ResNet-18
# served plain, with inference and with fuse.
bench-optimize: build
	$(CARGO) bench --bench optimize
	$(CARGO) bench --bench results

# The image path (bench/imaging.rs, about a minute): torchvision's ImageNet transform by
# wasmserve exact (Pillow's pixels), fast (fastImageDecode) and by Pillow + torchvision in
# Python, in turns on kitten.jpg and a 2400x1600 photo; then the fast mode's effect on
# MobileNetV2's answers for the shared photos. Uses the TorchServe venv (setup.sh).
bench-imaging: build
	$(CARGO) bench --bench imaging
	$(CARGO) bench --bench results

# Triton's perf_analyzer on the KServe v2 tensor path of MobileNetV2 and ResNet-18 at
# concurrency 1, 4 and 16: throughput and p99 (bench/perf_analyzer.rs; about two minutes).
bench-perf-analyzer: build
	$(CARGO) bench --bench perf_analyzer
	$(CARGO) bench --bench results

# Endurance: 20,000 kitten predictions at concurrency 64 with handler faults mixed in,
# RSS checked (tests/soak.rs; WASMSERVE_SOAK_REQUESTS, _CONCURRENCY, _WARMUP to change).
soak: build
	$(CARGO) test --release -p wasmserve --test soak -- --nocapture

# Three replicas sharing one model store behind HAProxy, at concurrency 16: one killed
# (SIGTERM) and replaced, then a rolling restart of all three; zero failed requests,
# x-request-id end to end, no request before a replica is ready, Prometheus scraping
# each replica; throughput and p99 per phase (bench/balancer.rs; about two minutes,
# loopback only; installs Debian's haproxy and prometheus where missing).
balancer: build
	./scripts/balancer-tools.sh
	$(CARGO) bench --bench balancer

# The OCI image, built here with buildah and no registry (scripts/build-image.sh:
# FROM scratch, the binary and the libraries it loads; localhost/wasmserve:VERSION and
# :latest). Installs podman, buildah, runc and patchelf with apt when missing.
image: build
	./scripts/build-image.sh

# The image end to end with podman (not part of `make test`): KServe's model-store layout
# mounted at /mnt/models, ready, the kitten classified, metrics, SIGTERM with a request in
# flight, and `podman kube play` of deploy/k8s (scripts/image-check.sh; ports 8080-8082,
# 7070, 7071 must be free).
image-check: image
	./scripts/image-check.sh

GUESTS := image_classifier image_segmenter object_detector text_classifier base_handler mnist_handler hostile_handler tensor_probe stream_classifier legacy_handler pipeline_probe asl_handler workflow_join
# Guests on the SDK's `pipeline` feature: linted in their own cargo run (features unify
# within one, and a component binds one world).
PIPELINE_GUESTS := mnist_number

lint: deps
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip2 $(addprefix -p ,$(GUESTS)) -p wasmserve-handler -- -D warnings
	$(CARGO) clippy --release --target wasm32-wasip2 $(addprefix -p ,$(PIPELINE_GUESTS)) -p wasmserve-handler --features wasmserve-handler/pipeline -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
