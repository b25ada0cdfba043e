#!/usr/bin/env bash
# Installs the third-party inference clients that the protocol tests drive wasmserve
# with, and prints where they are:
#
#   scripts/install-clients.sh
#   python=/…/clients-tc2.73.0-ks0.21.0-<hash>/bin/python     (tritonclient[http], kserve, numpy)
#   perf_analyzer=/…/perf_analyzer-2.41.0/perf_analyzer.sh    (Triton's perf_analyzer)
#
# Those two lines are all it writes on stdout; progress goes to stderr. Everything lands in
# ${WASMSERVE_CACHE:-~/.cache/wasmserve}, outside the clone; later runs reuse it (a
# `.installed` marker in each directory) and return at once. Concurrent runs are
# serialised with flock, so tests may call it in parallel.
#
# - The Python clients go into a virtual environment, pinned exactly here and, for their
#   dependencies, by tests/clients/constraints.txt (its hash is part of the venv's name,
#   so editing it makes a fresh venv). Needs python3 with venv (Debian: python3-venv) and
#   pip access to PyPI the first time. PYTHON picks the interpreter.
# - perf_analyzer: the PyPI perf-analyzer wheels need glibc 2.38, so the binary is taken
#   from the tritonclient 2.41.0 wheel (it needs glibc 2.34) without installing that
#   wheel; it links libcudart.so.12 (from the PyPI wheel
#   nvidia-cuda-runtime-cu12, unpacked next to it; no GPU is needed) and libb64.so.0d
#   (Debian package libb64-0d: installed with apt-get when running as root, otherwise
#   this script stops and says so). perf_analyzer.sh sets LD_LIBRARY_PATH and execs it.
set -euo pipefail

TRITONCLIENT_VERSION=2.73.0
KSERVE_VERSION=0.21.0
NUMPY_VERSION=2.4.6
PERF_ANALYZER_VERSION=2.41.0   # version of the tritonclient wheel the binary comes from
CUDART_VERSION=12.9.79         # nvidia-cuda-runtime-cu12

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
constraints=$root/tests/clients/constraints.txt
cache=${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

hash=$(sha256sum "$constraints" | cut -c1-8)
venv=$cache/clients-tc$TRITONCLIENT_VERSION-ks$KSERVE_VERSION-$hash
pa=$cache/perf_analyzer-$PERF_ANALYZER_VERSION
dl=$cache/downloads

log() { echo "install-clients: $*" >&2; }
pip_quiet=(--disable-pip-version-check --quiet)

# One installer at a time (tests may run this script concurrently).
exec 9>"$cache/.clients.lock"
flock 9

# --- Python clients ---------------------------------------------------------------
venv_ok() {
  [ -f "$venv/.installed" ] && "$venv/bin/python" -c '
import importlib.util, sys
sys.exit(not all(importlib.util.find_spec(m) for m in ("tritonclient.http", "kserve", "numpy")))
' 2>/dev/null
}
if ! venv_ok; then
  log "installing tritonclient[http] $TRITONCLIENT_VERSION, kserve $KSERVE_VERSION, numpy $NUMPY_VERSION into $venv"
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install "${pip_quiet[@]}" -c "$constraints" \
    "tritonclient[http]==$TRITONCLIENT_VERSION" \
    "kserve==$KSERVE_VERSION" \
    "numpy==$NUMPY_VERSION" >&2
  "$venv/bin/python" -c 'import tritonclient.http, kserve, numpy' >&2
  touch "$venv/.installed"
fi

# --- perf_analyzer ------------------------------------------------------------------
have_libb64() {
  local ldconfig
  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  "$ldconfig" -p 2>/dev/null | grep -q 'libb64\.so\.0d'
}
if ! have_libb64; then
  if [ "$(id -u)" -ne 0 ]; then
    log "perf_analyzer needs libb64.so.0d: install the Debian package libb64-0d" \
      "(sudo apt-get install libb64-0d) and run this again"
    exit 1
  fi
  log "installing libb64-0d with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends libb64-0d >&2 || {
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends libb64-0d >&2
  }
  have_libb64 || { log "libb64.so.0d still not found after installing libb64-0d"; exit 1; }
fi

if [ ! -f "$pa/.installed" ] || [ ! -x "$pa/perf_analyzer.sh" ] || [ ! -x "$pa/bin/perf_analyzer" ]; then
  log "installing perf_analyzer (from the tritonclient $PERF_ANALYZER_VERSION wheel) into $pa"
  mkdir -p "$dl"
  "$venv/bin/python" -m pip download "${pip_quiet[@]}" --no-deps --only-binary=:all: -d "$dl" \
    "tritonclient==$PERF_ANALYZER_VERSION" \
    "nvidia-cuda-runtime-cu12==$CUDART_VERSION" >&2
  tmp=$(mktemp -d "$cache/perf_analyzer.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # Only the binary and the one library: the rest of the 2.41 wheel (an old Python
  # client) must not shadow the pinned tritonclient.
  "$venv/bin/python" - "$dl" "$tmp" "$PERF_ANALYZER_VERSION" "$CUDART_VERSION" <<'PY'
import glob, os, sys, zipfile
dl, out, pav, rtv = sys.argv[1:]

def wheel(prefix, version):
    found = sorted(glob.glob(os.path.join(dl, f"{prefix}-{version}-*.whl")))
    if not found:
        sys.exit(f"install-clients: no {prefix} {version} wheel in {dl}")
    return zipfile.ZipFile(found[-1])

def extract(zf, member, dest, mode):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zf.open(member) as src, open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.chmod(dest, mode)

extract(wheel("tritonclient", pav), f"tritonclient-{pav}.data/data/bin/perf_analyzer",
        os.path.join(out, "bin", "perf_analyzer"), 0o755)
extract(wheel("nvidia_cuda_runtime_cu12", rtv), "nvidia/cuda_runtime/lib/libcudart.so.12",
        os.path.join(out, "lib", "libcudart.so.12"), 0o644)
PY
  cat >"$tmp/perf_analyzer.sh" <<EOF
#!/bin/sh
# perf_analyzer $PERF_ANALYZER_VERSION (the binary from the tritonclient $PERF_ANALYZER_VERSION wheel),
# installed by wasmserve's scripts/install-clients.sh. Runs it with its libcudart.so.12.
here=\$(dirname "\$(readlink -f "\$0")")
LD_LIBRARY_PATH="\$here/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "\$here/bin/perf_analyzer" "\$@"
EOF
  chmod 755 "$tmp/perf_analyzer.sh"
  missing=$(LD_LIBRARY_PATH="$tmp/lib" ldd "$tmp/bin/perf_analyzer" | grep 'not found' || true)
  if [ -n "$missing" ]; then
    log "perf_analyzer is missing shared libraries:"
    echo "$missing" >&2
    exit 1
  fi
  touch "$tmp/.installed"
  rm -rf "$pa"
  mv "$tmp" "$pa"
  chmod 755 "$pa"
  trap - EXIT
fi
flock -u 9

echo "python=$venv/bin/python"
echo "perf_analyzer=$pa/perf_analyzer.sh"
