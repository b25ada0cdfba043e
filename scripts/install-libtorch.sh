#!/usr/bin/env bash
# Installs libtorch 2.11.0 from the PyPI wheels into a cache outside the clone,
# idempotently, and prints its path. tch 0.24 wants exactly this version.
#
#   install-libtorch.sh          the CPU libtorch (libtorch-2.11.0)
#   install-libtorch.sh --cuda   libtorch with CUDA 13.0 (libtorch-2.11.0-cu130)
#   WASMSERVE_CACHE              cache root (default: ~/.cache/wasmserve)
#
# PyPI's torch==2.11.0 for Linux x86-64 is the cu130 build: one wheel holds both.
# libtorch_cpu.so links against libcudart.so.13 and libcupti.so.13 even on CPU; they come
# from the nvidia-cuda-runtime and nvidia-cuda-cupti wheels. The CPU install leaves out
# the CUDA kernels, nvshmem, nvrtc and the Python bindings. The CUDA install keeps all of
# torch/lib but the Python bindings and adds the shared libraries of the nvidia-* wheels
# torch's metadata pins (cuBLAS, cuDNN, cuFFT, cuRAND, cuSOLVER, cuSPARSE(Lt), NCCL,
# nvJitLink, NVRTC, NVTX, nvshmem, cuFile), about 4 GB, into the same lib folder: their
# loaders find each other through torch's $ORIGIN run path. The driver (libcuda.so.1) is
# the machine's; without one, the CUDA build runs on the CPU.
set -euo pipefail

cuda=0
case "${1:-}" in
  --cuda) cuda=1 ;;
  "") ;;
  *) echo "usage: $0 [--cuda]" >&2; exit 2 ;;
esac

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
cache="${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}"
# torch's Requires-Dist for Linux (torch-2.11.0.dist-info/METADATA).
CUDA_WHEELS=(
  "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.2"
  "nvidia-cudnn-cu13==9.19.0.56"
  "nvidia-cusparselt-cu13==0.8.0"
  "nvidia-nccl-cu13==2.28.9"
  "nvidia-nvshmem-cu13==3.4.5"
)
dest="$cache/libtorch-$TORCH_VERSION"
[ "$cuda" = 1 ] && dest="$dest-cu130"

if [ -f "$dest/.complete" ]; then
  echo "$dest"
  exit 0
fi

dl="$cache/downloads"
mkdir -p "$dl"
echo "installing libtorch $TORCH_VERSION into $dest (from PyPI wheels)" >&2
python3 -m pip download --quiet --no-deps -d "$dl" \
  "torch==$TORCH_VERSION" \
  "nvidia-cuda-runtime==$CUDART_VERSION" \
  "nvidia-cuda-cupti==$CUPTI_VERSION" >&2
cudadl="$cache/downloads-cuda"
if [ "$cuda" = 1 ]; then
  mkdir -p "$cudadl"
  python3 -m pip download --quiet -d "$cudadl" "${CUDA_WHEELS[@]}" >&2
fi

tmp="$(mktemp -d "$cache/libtorch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
python3 - "$dl" "$tmp" "$TORCH_VERSION" "$CUDART_VERSION" "$CUPTI_VERSION" "$cuda" "$cudadl" <<'PY'
import glob, os, re, shutil, sys, zipfile
dl, out, tv, rv, cv, cuda, cudadl = sys.argv[1:]
cuda = cuda == "1"
lib = os.path.join(out, "lib"); os.makedirs(lib)

def wheel(prefix, version):
    found = sorted(glob.glob(os.path.join(dl, f"{prefix}-{version}-*.whl")))
    if not found:
        sys.exit(f"no wheel {prefix}=={version} in {dl}")
    return found[0]

skip = re.compile(r"_python" if cuda else r"(cuda|nvshmem|nvrtc|_python)")
with zipfile.ZipFile(wheel("torch", tv)) as z:
    for name in z.namelist():
        if name.startswith("torch/include/") and not name.endswith("/"):
            z.extract(name, out)
        elif name.startswith("torch/lib/") and not name.endswith("/"):
            base = os.path.basename(name)
            if skip.search(base):
                continue
            with z.open(name) as src, open(os.path.join(lib, base), "wb") as dst:
                shutil.copyfileobj(src, dst)
os.rename(os.path.join(out, "torch", "include"), os.path.join(out, "include"))
shutil.rmtree(os.path.join(out, "torch"))

for prefix, version, want in [("nvidia_cuda_runtime", rv, "libcudart.so.13"),
                              ("nvidia_cuda_cupti", cv, "libcupti.so.13")]:
    with zipfile.ZipFile(wheel(prefix, version)) as z:
        names = [n for n in z.namelist() if os.path.basename(n) == want]
        if not names:
            sys.exit(f"{want} not found in the {prefix} wheel")
        with z.open(names[0]) as src, open(os.path.join(lib, want), "wb") as dst:
            shutil.copyfileobj(src, dst)
if cuda:
    # Every shared library in the nvidia-* wheels (nvidia/<part>/lib/lib*.so*).
    so = re.compile(r"^nvidia/.*/lib/[^/]+\.so(\.[0-9]+)*$")
    wheels = sorted(glob.glob(os.path.join(cudadl, "nvidia_*.whl")))
    if not wheels:
        sys.exit(f"no nvidia-* wheels in {cudadl}")
    for path in wheels:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if so.match(name):
                    with z.open(name) as src, open(os.path.join(lib, os.path.basename(name)), "wb") as dst:
                        shutil.copyfileobj(src, dst)
    if not os.path.exists(os.path.join(lib, "libcudnn.so.9")):
        sys.exit("libcudnn.so.9 missing after unpacking the nvidia-* wheels")
for f in os.listdir(lib):
    os.chmod(os.path.join(lib, f), 0o755)
# torch-sys reads the version from here when it is present.
open(os.path.join(out, "build-version"), "w").write(tv + "\n")
PY
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
touch "$dest/.complete"
echo "$dest"
