#!/usr/bin/env bash
# The tools `make balancer` runs (bench/balancer.rs): HAProxy, and Prometheus with
# promtool, from Debian's packages. Installs them with apt when they are missing (as root;
# otherwise says what to install).
set -euo pipefail
need=()
command -v haproxy >/dev/null || need+=(haproxy)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "balancer-tools: installing ${need[*]} with apt-get" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  # Debian's packages start their services; the check runs its own, on loopback ports.
  for s in "${need[@]}"; do
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      systemctl stop "$s" >/dev/null 2>&1 || true
    else
      service "$s" stop >/dev/null 2>&1 || true
    fi
  done
else
  echo "balancer-tools: missing ${need[*]}: install them (Debian: apt-get install ${need[*]})" >&2
  exit 1
fi
