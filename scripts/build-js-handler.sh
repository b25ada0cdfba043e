#!/usr/bin/env bash
# Builds the JavaScript handler (examples/js_handler) into a wasmserve handler component
# with componentize-js.
#
#   scripts/build-js-handler.sh [OUT.wasm]     (default: target/handlers/js_handler.wasm)
#
# componentize-js (npm, pinned with its dependencies by examples/js_handler/
# package-lock.json) is installed once with `npm ci` into an npm prefix under
# ${WASMSERVE_CACHE:-~/.cache/wasmserve}; later runs reuse it. Needs node >= 18 and npm,
# and the npm registry the first time.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/examples/js_handler
out=${1:-$root/target/handlers/js_handler.wasm}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

cache=${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}
# Keyed by the lock file: a new pin installs beside the old one.
key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-12)
prefix=$cache/componentize-js-$key
mkdir -p "$cache"

exec 9>"$cache/.componentize-js.lock"
flock 9
if [ ! -f "$prefix/.installed" ] || ! [ -x "$prefix/node_modules/.bin/componentize-js" ]; then
  echo "build-js-handler: installing componentize-js into $prefix" >&2
  rm -rf "$cache"/componentize-js-*/   # older pins and broken installs
  mkdir -p "$prefix"
  cp "$src/package.json" "$src/package-lock.json" "$prefix/"
  npm ci --prefix "$prefix" --no-audit --no-fund --loglevel=error
  touch "$prefix/.installed"
fi
flock -u 9

# The WIT folder: the handler's world, wasmserve's package and the WASI 0.2 packages that
# wasi:filesystem needs (shipped with jco, a dependency of componentize-js).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wasi=$prefix/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12
mkdir -p "$work/wit/deps/wasmserve-handler"
cp "$src/world.wit" "$work/wit/"
cp "$root/wit/"*.wit "$work/wit/deps/wasmserve-handler/"
for pkg in wasi-io wasi-clocks wasi-filesystem; do
  cp -r "$wasi/$pkg" "$work/wit/deps/$pkg"
done

# No wasi:http in the component: the host does not provide it (and a handler needs no
# network). stdio stays, so uncaught errors reach the model log.
"$prefix/node_modules/.bin/componentize-js" --wit "$work/wit" --world-name js-handler \
  --disable http fetch-event -o "$work/out.wasm" "$src/handler.js"
mv "$work/out.wasm" "$out"
echo "build-js-handler: $out ($(wc -c <"$out") bytes)" >&2
