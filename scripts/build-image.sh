#!/usr/bin/env bash
# Builds the wasmserve OCI image on this machine, with no registry (`make image`):
#
#   scripts/build-image.sh [BINARY]      (default target/release/wasmserve)
#
# The root file system is assembled by scripts/image-rootfs.sh (the binary and exactly
# the libraries it loads); the image is then built with buildah from the `runtime` stage
# of the Containerfile, as written there, its `COPY --from=build /image/…` taking that
# folder instead. Tags: localhost/wasmserve:VERSION and :latest (IMAGE to change the
# name). Prints the image's name and size. Installs podman, buildah, runc and patchelf
# with apt when missing (scripts/containers-env.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/containers-env.sh
. scripts/containers-env.sh

bin=${1:-target/release/wasmserve}
image=${IMAGE:-localhost/wasmserve}
libtorch=$(readlink -f .libtorch)/lib
[ -x "$bin" ] || { echo "build-image: no $bin; run cargo build --release (make build)" >&2; exit 1; }
version=$("$bin" --version | awk '{ print $2 }')
[ -f "$libtorch/libtorch_cpu.so" ] || { echo "build-image: no libtorch at $libtorch; run make deps" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/wasmserve-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
scripts/image-rootfs.sh "$bin" "$libtorch" "$ctx/image"

# The Containerfile's runtime stage, its build-stage sources replaced by the folder.
sed -n '/^FROM scratch AS runtime/,$p' Containerfile \
  | sed 's|--from=build \(.*\)/image/|\1image/|' >"$ctx/Containerfile"
grep -q '^COPY image/root /' "$ctx/Containerfile" \
  || { echo "build-image: the Containerfile's runtime stage has no COPY --from=build /image/root /" >&2; exit 1; }

buildah build --quiet --layers=false -f "$ctx/Containerfile" \
  -t "$image:$version" -t "$image:latest" "$ctx" >&2
size=$(podman image inspect --format '{{.Size}}' "$image:$version")
echo "build-image: $image:$version ($((size / 1000000)) MB)" >&2
echo "$image:$version"
