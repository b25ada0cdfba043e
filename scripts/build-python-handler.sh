#!/usr/bin/env bash
# Builds the Python handler (examples/python_handler) into a wasmserve handler component
# with componentize-py.
#
#   scripts/build-python-handler.sh [OUT.wasm]     (default: target/handlers/python_handler.wasm)
#
# componentize-py (PyPI) is installed once, into a virtual environment under
# ${WASMSERVE_CACHE:-~/.cache/wasmserve}; later runs reuse it. Needs python3 with venv
# (Debian: python3-venv) and pip access to PyPI the first time. PYTHON picks the
# interpreter used to create the venv.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/target/handlers/python_handler.wasm}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

cache=${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}
venv=$cache/componentize-py-$COMPONENTIZE_PY_VERSION
mkdir -p "$cache"

# One installer at a time (tests may run this script concurrently).
exec 9>"$cache/.componentize-py.lock"
flock 9
if [ ! -f "$venv/.installed" ] || ! "$venv/bin/componentize-py" --version >/dev/null 2>&1; then
  echo "build-python-handler: installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    "componentize-py==$COMPONENTIZE_PY_VERSION"
  touch "$venv/.installed"
fi
flock -u 9

# Build from a copy of the sources, so that no __pycache__ lands in the clone.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root"/examples/python_handler/*.py "$work/"
cd "$work"
# componentize-py generates the bindings (module wit_world) from wit/ itself, imports
# handler.py at build time and snapshots the initialised interpreter into the component.
"$venv/bin/componentize-py" -d "$root/wit" -w handler componentize -p . handler -o "$work/out.wasm"
mv "$work/out.wasm" "$out"
echo "build-python-handler: $out ($(wc -c <"$out") bytes)" >&2
