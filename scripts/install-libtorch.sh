#!/usr/bin/env bash
# Installs libtorch 2.11.0 (CPU) from the PyPI wheels into a cache outside the clone,
# idempotently, and prints its path. tch 0.24 wants exactly this version.
#
#   WASMSERVE_CACHE  cache root (default: ~/.cache/wasmserve)
#
# libtorch_cpu.so links against libcudart.so.13 and libcupti.so.13 even on CPU; they come
# from the nvidia-cuda-runtime and nvidia-cuda-cupti wheels. The CUDA kernels, nvshmem,
# nvrtc and the Python bindings are left out of a CPU build.
set -euo pipefail

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
cache="${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}"
dest="$cache/libtorch-$TORCH_VERSION"

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

tmp="$(mktemp -d "$cache/libtorch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
python3 - "$dl" "$tmp" "$TORCH_VERSION" "$CUDART_VERSION" "$CUPTI_VERSION" <<'PY'
import glob, os, re, shutil, sys, zipfile
dl, out, tv, rv, cv = sys.argv[1:]
lib = os.path.join(out, "lib"); os.makedirs(lib)

def wheel(prefix, version):
    found = sorted(glob.glob(os.path.join(dl, f"{prefix}-{version}-*.whl")))
    if not found:
        sys.exit(f"no wheel {prefix}=={version} in {dl}")
    return found[0]

skip = re.compile(r"(cuda|nvshmem|nvrtc|_python)")
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
