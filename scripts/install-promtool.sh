#!/usr/bin/env bash
# promtool (Debian package `prometheus`), which the metrics tests use to check the
# metrics API's output. Installs with apt-get as root or through sudo.
set -euo pipefail
command -v promtool >/dev/null && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || {
  $sudo apt-get update >/dev/null
  $sudo apt-get install -y --no-install-recommends prometheus >/dev/null
}
command -v promtool >/dev/null
