#!/usr/bin/env bash
# nasm, for the SIMD of the vendored libjpeg-turbo (mozjpeg-sys assembles it when nasm is
# on PATH, and builds the plain C decoder otherwise: correct, about twice as slow).
# Debian's package, through apt-get as root (or sudo); a failure is a warning, not an
# error, since the build works without it.
set -uo pipefail
command -v nasm >/dev/null && exit 0
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}
export DEBIAN_FRONTEND=noninteractive
if ! as_root apt-get install -y --no-install-recommends nasm >&2; then
  as_root apt-get update >&2 && as_root apt-get install -y --no-install-recommends nasm >&2
fi
command -v nasm >/dev/null || echo "warning: nasm not installed; the JPEG decoder is built without SIMD" >&2
exit 0
