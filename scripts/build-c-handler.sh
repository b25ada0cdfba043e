#!/usr/bin/env bash
# Builds the C handler (examples/c_handler) into a wasmserve handler component with clang,
# wit-bindgen's C generator and wasm-tools.
#
#   scripts/build-c-handler.sh [OUT.wasm]     (default: target/handlers/c_handler.wasm)
#
# The toolchain is installed once, then reused:
#   - Debian packages clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (apt-get, only
#     when one is missing; needs root or sudo the first time);
#   - wit-bindgen-cli and wasm-tools (crates.io, `cargo install --root`) into
#     ${WASMSERVE_CACHE:-~/.cache/wasmserve}/c-toolchain;
#   - the WASI preview1 reactor adapter of wasmtime 48, copied out of the crates.io crate
#     wasi-preview1-component-adapter-provider (fetched with `cargo fetch`).
# Later runs install nothing. CC overrides the compiler (any clang that targets
# wasm32-wasi with a wasi-libc sysroot, e.g. wasi-sdk's).
set -euo pipefail

WIT_BINDGEN_VERSION=0.61.1
WASM_TOOLS_VERSION=1.263.0
ADAPTER_VERSION=48.0.8   # = the host's wasmtime
APT_PACKAGES=(clang lld wasi-libc libclang-rt-14-dev-wasm32)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/examples/c_handler
out=${1:-$root/target/handlers/c_handler.wasm}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

cache=${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}
tc=$cache/c-toolchain
key="wit-bindgen-$WIT_BINDGEN_VERSION wasm-tools-$WASM_TOOLS_VERSION adapter-$ADAPTER_VERSION"
adapter=$tc/wasi_snapshot_preview1.reactor-$ADAPTER_VERSION.wasm
mkdir -p "$tc"

# One installer at a time (tests may run this script concurrently).
exec 9>"$cache/.c-toolchain.lock"
flock 9

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && [ -z "${CC:-}" ]; then
  echo "build-c-handler: installing ${missing[*]} with apt-get" >&2
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [ "$(cat "$tc/.installed" 2>/dev/null)" != "$key" ] || ! [ -x "$tc/bin/wit-bindgen" ] \
  || ! [ -x "$tc/bin/wasm-tools" ] || ! [ -f "$adapter" ]; then
  echo "build-c-handler: installing $key into $tc" >&2
  rm -f "$tc/.installed"
  cargo install --quiet --locked --root "$tc" wit-bindgen-cli --version "=$WIT_BINDGEN_VERSION" \
    --no-default-features --features c
  cargo install --quiet --locked --root "$tc" wasm-tools --version "=$WASM_TOOLS_VERSION"
  # The adapter's bytes ship in the crate's source: fetch it, then copy them out.
  fetch=$(mktemp -d)
  mkdir -p "$fetch/src"
  echo 'fn main() {}' >"$fetch/src/main.rs"
  cat >"$fetch/Cargo.toml" <<EOF
[package]
name = "adapter-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER_VERSION"
EOF
  (cd "$fetch" && cargo fetch --quiet)
  crate=$(cd "$fetch" && cargo metadata --format-version 1 --quiet |
    python3 -c 'import json, sys, os
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"]
           if p["name"] == "wasi-preview1-component-adapter-provider"))')
  cp "$crate/artefacts/wasi_snapshot_preview1.reactor.wasm" "$adapter"
  rm -rf "$fetch"
  echo "$key" >"$tc/.installed"
fi
flock -u 9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Bindings for the world `handler` (wasmserve's WIT, unchanged): handler.h, handler.c and
# handler_component_type.o (the component type, custom section for wasm-tools).
"$tc/bin/wit-bindgen" c --world handler --out-dir "$work/gen" "$root/wit" >/dev/null

# A wasip1 reactor module (no main; `_initialize` runs the C constructors, which also find
# the preopened /model for wasi-libc). Files under /model are opened with plain fopen.
# --strip-debug: Debian's wasi-libc.a carries DWARF (~170 KB), useless here.
${CC:-clang} --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wno-unused-parameter \
  -Wl,--strip-debug -I "$work/gen" -o "$work/core.wasm" \
  "$src/handler.c" "$work/gen/handler.c" "$work/gen/handler_component_type.o"
# The component: the core module, with the preview1 reactor adapter turning its WASI
# preview1 imports into WASI 0.2 imports.
"$tc/bin/wasm-tools" component new "$work/core.wasm" \
  --adapt "wasi_snapshot_preview1=$adapter" -o "$work/out.wasm"
mv "$work/out.wasm" "$out"
echo "build-c-handler: $out ($(wc -c <"$out") bytes)" >&2
