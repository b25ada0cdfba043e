#!/usr/bin/env bash
# Assembles the root file system of the wasmserve container image in OUT: the binary and
# exactly the shared libraries it loads, nothing else (no shell, no package manager, no
# Python). Used by scripts/build-image.sh on this machine and by the Containerfile's build
# stage, so both images hold the same files.
#
#   scripts/image-rootfs.sh BINARY LIBTORCH_LIB_DIR OUT
#
# OUT/root is the root file system; OUT/home the user's home folder, copied to
# /home/wasmserve owned by uid 1000 (a COPY --chown does not change a folder that exists
# already, so it is not in OUT/root).
#
# - /usr/local/bin/wasmserve: the binary, its rpath set (patchelf) to /usr/local/lib/wasmserve
#   instead of the build tree's libtorch;
# - /usr/local/lib/wasmserve: libtorch's libraries that ldd says the binary loads
#   (libtorch_cpu, libc10, libgomp, libcudart and libcupti, which libtorch_cpu links even on
#   CPU), stripped of their debug symbols (libtorch_cpu.so: 451 MB -> 358 MB);
# - glibc, libstdc++ and libgcc_s from the build machine, at the paths ldd found them
#   (the dynamic loader at /lib64/ld-linux-x86-64.so.2);
# - /etc/passwd and /etc/group with the user wasmserve (uid and gid 1000), whose home
#   /home/wasmserve is the working folder (key_file.json, logs, the component cache);
#   /tmp (mode 1777) for the server's work folder.
#
# Needs ldd, patchelf and strip (binutils). OUT must not exist or be empty.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 BINARY LIBTORCH_LIB_DIR OUT" >&2; exit 2; }
bin=$1 libtorch=$(cd "$2" && pwd) out=$3
[ -x "$bin" ] || { echo "image-rootfs: $bin is not an executable" >&2; exit 1; }
for tool in ldd patchelf strip; do
  command -v "$tool" >/dev/null || { echo "image-rootfs: $tool is missing" >&2; exit 1; }
done
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || { echo "image-rootfs: $out is not empty" >&2; exit 1; }
mkdir -p "$out/home/.cache/wasmserve"
out=$out/root

libdir=/usr/local/lib/wasmserve
mkdir -p "$out/usr/local/bin" "$out$libdir" "$out/etc" "$out/tmp" "$out/home"
chmod 1777 "$out/tmp"

# What the binary loads, as ldd resolves it with the build tree's rpath.
deps=$(ldd "$bin" | awk '/=> \// { print $3 } /^\s*\/[^ ]+ \(/ { print $1 }' | sort -u)
[ -n "$deps" ] || { echo "image-rootfs: ldd found no libraries for $bin" >&2; exit 1; }
for lib in $deps; do
  real=$(readlink -f "$lib")
  case "$real" in
    "$libtorch"/*)
      strip --strip-unneeded -o "$out$libdir/$(basename "$lib")" "$real"
      chmod 0755 "$out$libdir/$(basename "$lib")"
      ;;
    *)
      # A system library: at the path the loader looks for it (its name as ldd gave it).
      mkdir -p "$out$(dirname "$lib")"
      cp -L "$real" "$out$lib"
      ;;
  esac
done
# The loader itself, at the path the ELF interpreter names.
interp=$(patchelf --print-interpreter "$bin")
if [ ! -e "$out$interp" ]; then
  mkdir -p "$out$(dirname "$interp")"
  cp -L "$interp" "$out$interp"
fi

cp "$bin" "$out/usr/local/bin/wasmserve"
patchelf --set-rpath "$libdir" "$out/usr/local/bin/wasmserve"
chmod 0755 "$out/usr/local/bin/wasmserve"

cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
wasmserve:x:1000:1000:wasmserve:/home/wasmserve:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
cat >"$out/etc/group" <<'EOF'
root:x:0:
wasmserve:x:1000:
nogroup:x:65534:
EOF
# The model store's mount point (KServe's storage initializer puts storageUri there).
mkdir -p "$out/mnt/models"

echo "image-rootfs: $(du -sh "$out" | cut -f1) in $out" >&2
