#!/usr/bin/env bash
# Installs the third-party inference clients that the protocol tests drive wasmserve
# with, and prints where they are:
#
#   scripts/install-clients.sh
#   python=/…/clients-tc2.73.0-ks0.21.0-<hash>/bin/python     (tritonclient[http,grpc], kserve, numpy, …)
#   perf_analyzer=/…/perf_analyzer-2.41.0/perf_analyzer.sh    (Triton's perf_analyzer)
#   torchserve_grpc=/…/torchserve-grpc-0.12.0                 (TorchServe's gRPC protos and Python stubs)
#
# Those three lines are all it writes on stdout; progress goes to stderr. Everything lands in
# ${WASMSERVE_CACHE:-~/.cache/wasmserve}, outside the clone; later runs reuse it (a
# `.installed` marker in each directory) and return at once. Concurrent runs are
# serialised with flock, so tests may call it in parallel.
#
# - The Python clients go into a virtual environment, pinned exactly here and, for their
#   dependencies, by tests/clients/constraints.txt (its hash is part of the venv's name,
#   so editing it makes a fresh venv): tritonclient[http,grpc], kserve, numpy,
#   googleapis-common-protos (google.rpc.Status, which TorchServe's inference.proto imports)
#   and grpcio-tools (kserve needs it too). Needs python3 with venv (Debian: python3-venv)
#   and pip access to PyPI the first time. PYTHON picks the interpreter.
# - perf_analyzer: the PyPI perf-analyzer wheels need glibc 2.38, so the binary is taken
#   from the tritonclient 2.41.0 wheel (it needs glibc 2.34) without installing that
#   wheel; it links libcudart.so.12 (from the PyPI wheel
#   nvidia-cuda-runtime-cu12, unpacked next to it; no GPU is needed) and libb64.so.0d
#   (Debian package libb64-0d: installed with apt-get when running as root, otherwise
#   this script stops and says so). perf_analyzer.sh sets LD_LIBRARY_PATH and execs it.
# - torchserve_grpc: TorchServe's own gRPC API definitions, inference.proto, management.proto
#   (and open_inference_grpc.proto), as shipped in the torchserve 0.12.0 wheel: they are
#   resources of its Java front end, ts/frontend/model-server.jar, at proto/*.proto. The
#   wheel is fetched with `pip download --no-deps` (no torch, nothing installed); the protos
#   go to <dir>/proto/ and are compiled with the venv's `python -m grpc_tools.protoc`
#   (include paths: grpc_tools' well-known types and googleapis-common-protos'
#   google/rpc/status.proto) into <dir>/stubs/: inference_pb2.py, inference_pb2_grpc.py,
#   management_pb2.py, management_pb2_grpc.py, open_inference_grpc_pb2{,_grpc}.py. Put
#   <dir>/stubs on sys.path and run them with the venv's python (they need its grpcio,
#   protobuf and google.rpc). The marker records the venv it was compiled with; a new venv
#   recompiles them.
set -euo pipefail

TRITONCLIENT_VERSION=2.73.0
KSERVE_VERSION=0.21.0
NUMPY_VERSION=2.4.6
PERF_ANALYZER_VERSION=2.41.0   # version of the tritonclient wheel the binary comes from
CUDART_VERSION=12.9.79         # nvidia-cuda-runtime-cu12
GOOGLEAPIS_PROTOS_VERSION=1.76.0  # googleapis-common-protos (google/rpc/status.proto)
TORCHSERVE_VERSION=0.12.0      # the torchserve wheel the gRPC protos come from

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
constraints=$root/tests/clients/constraints.txt
cache=${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

hash=$(sha256sum "$constraints" | cut -c1-8)
venv=$cache/clients-tc$TRITONCLIENT_VERSION-ks$KSERVE_VERSION-$hash
pa=$cache/perf_analyzer-$PERF_ANALYZER_VERSION
tsg=$cache/torchserve-grpc-$TORCHSERVE_VERSION
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
sys.exit(not all(importlib.util.find_spec(m) for m in (
    "tritonclient.http", "tritonclient.grpc", "kserve", "numpy", "google.rpc.status_pb2",
    "grpc_tools.protoc")))
' 2>/dev/null
}
if ! venv_ok; then
  log "installing tritonclient[http,grpc] $TRITONCLIENT_VERSION, kserve $KSERVE_VERSION," \
    "numpy $NUMPY_VERSION, googleapis-common-protos $GOOGLEAPIS_PROTOS_VERSION into $venv"
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install "${pip_quiet[@]}" -c "$constraints" \
    "tritonclient[http,grpc]==$TRITONCLIENT_VERSION" \
    "kserve==$KSERVE_VERSION" \
    "numpy==$NUMPY_VERSION" \
    "googleapis-common-protos==$GOOGLEAPIS_PROTOS_VERSION" \
    grpcio-tools >&2
  # Separately: tritonclient.grpc and kserve both define the protobuf package `inference`
  # (grpc_service.proto, grpc_predict_v2.proto), so one process cannot import both.
  "$venv/bin/python" -c 'import tritonclient.http, kserve, numpy' >&2
  "$venv/bin/python" -c 'import tritonclient.grpc, google.rpc.status_pb2, grpc_tools.protoc' >&2
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

# --- TorchServe's gRPC protos and their Python stubs --------------------------------
if [ ! -f "$tsg/.installed" ] || [ "$(cat "$tsg/.installed")" != "$venv" ] \
   || [ ! -f "$tsg/stubs/inference_pb2_grpc.py" ] || [ ! -f "$tsg/stubs/management_pb2_grpc.py" ]; then
  log "installing TorchServe $TORCHSERVE_VERSION's gRPC protos and Python stubs into $tsg"
  mkdir -p "$dl"
  "$venv/bin/python" -m pip download "${pip_quiet[@]}" --no-deps --only-binary=:all: -d "$dl" \
    "torchserve==$TORCHSERVE_VERSION" >&2
  tmp_tsg=$(mktemp -d "$cache/torchserve-grpc.XXXXXX")
  trap 'rm -rf "$tmp_tsg"' EXIT
  "$venv/bin/python" - "$dl" "$tmp_tsg" "$TORCHSERVE_VERSION" <<'PY'
import glob, io, os, subprocess, sys, zipfile
import grpc_tools, google.rpc.status_pb2 as status_pb2

dl, out, version = sys.argv[1:]
found = sorted(glob.glob(os.path.join(dl, f"torchserve-{version}-*.whl")))
if not found:
    sys.exit(f"install-clients: no torchserve {version} wheel in {dl}")
wheel = zipfile.ZipFile(found[-1])

# The protos are resources of the Java front end (ts/frontend/model-server.jar: proto/*.proto,
# with copies at the jar's root); look in the wheel itself too, in case a release moves them.
NAMES = ("inference.proto", "management.proto", "open_inference_grpc.proto")
REQUIRED = NAMES[:2]
protos = {}  # name -> (bytes, where, under proto/)
def scan(zf, where):
    for member in zf.namelist():
        base = member.rsplit("/", 1)[-1]
        if base not in NAMES:
            continue
        under_proto = member == "proto/" + base or member.endswith("/proto/" + base)
        if base not in protos or (under_proto and not protos[base][2]):
            protos[base] = (zf.read(member), f"{where}!{member}", under_proto)
wheel_name = os.path.basename(found[-1])
scan(wheel, wheel_name)
for member in wheel.namelist():
    if member.endswith(".jar"):
        scan(zipfile.ZipFile(io.BytesIO(wheel.read(member))), f"{wheel_name}!{member}")
missing = [n for n in REQUIRED if n not in protos]
if missing:
    sys.exit(f"install-clients: {', '.join(missing)} not found in {found[-1]}")

proto_dir, stubs_dir = os.path.join(out, "proto"), os.path.join(out, "stubs")
os.makedirs(proto_dir)
os.makedirs(stubs_dir)
with open(os.path.join(proto_dir, "SOURCE"), "w") as f:
    for name in sorted(protos):
        data, where, _ = protos[name]
        with open(os.path.join(proto_dir, name), "wb") as p:
            p.write(data)
        f.write(f"{name}: {where}\n")

wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
# googleapis-common-protos installs google/rpc/status.proto next to status_pb2.py.
googleapis = os.path.dirname(os.path.dirname(os.path.dirname(status_pb2.__file__)))
if not os.path.isfile(os.path.join(googleapis, "google", "rpc", "status.proto")):
    sys.exit(f"install-clients: no google/rpc/status.proto under {googleapis}")
cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", f"-I{wkt}",
       f"-I{googleapis}", f"--python_out={stubs_dir}", f"--pyi_out={stubs_dir}",
       f"--grpc_python_out={stubs_dir}"] + sorted(protos)
subprocess.run(cmd, check=True, cwd=proto_dir, stdout=sys.stderr)

sys.path.insert(0, stubs_dir)
sys.dont_write_bytecode = True
import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc  # noqa: E401,F401
print("install-clients: compiled " + ", ".join(sorted(protos)), file=sys.stderr)
PY
  echo "$venv" >"$tmp_tsg/.installed"
  rm -rf "$tsg"
  mv "$tmp_tsg" "$tsg"
  chmod 755 "$tsg"
  trap - EXIT
fi
flock -u 9

echo "python=$venv/bin/python"
echo "perf_analyzer=$pa/perf_analyzer.sh"
echo "torchserve_grpc=$tsg"
