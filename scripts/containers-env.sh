#!/usr/bin/env bash
# Sourced by the image scripts: makes podman and buildah usable on this machine, without
# touching /etc. Installs them with apt when they are missing (root only; otherwise says
# what to install), writes a containers.conf into the cache and exports CONTAINERS_CONF:
#
# - the OCI runtime is runc (crun fails on this machine's hybrid cgroups);
# - `default_ulimits = []` (the default ulimits cannot be set here);
# - cgroup_manager = "cgroupfs" (no systemd to manage them).
#
# No registry is reachable: images are built FROM scratch (scripts/build-image.sh) and
# containers run with --network=host.

containers_env() {
  local need=() tool
  for tool in podman buildah runc patchelf; do
    command -v "$tool" >/dev/null || need+=("$tool")
  done
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "containers-env: installing ${need[*]} with apt-get" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    else
      echo "containers-env: missing ${need[*]}: install them (Debian: apt-get install ${need[*]})" >&2
      return 1
    fi
  fi
  local cache=${WASMSERVE_CACHE:-$HOME/.cache/wasmserve}
  local dir=$cache/containers
  mkdir -p "$dir"
  cat >"$dir/containers.conf.new" <<'CONF'
# Written by wasmserve's scripts/containers-env.sh.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
  mv "$dir/containers.conf.new" "$dir/containers.conf"
  export CONTAINERS_CONF=$dir/containers.conf
}

containers_env
