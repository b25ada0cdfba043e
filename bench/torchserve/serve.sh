#!/usr/bin/env bash
# bench/torchserve/serve.sh — start, stop and measure a TorchServe 0.12 instance for benchmarks.
#
# Usage:
#   serve.sh start STORE_DIR WORK_DIR WORKERS MODE PORT_BASE MODELS
#       Writes WORK_DIR/config.properties (inference on 127.0.0.1:PORT_BASE, management on
#       PORT_BASE+1, metrics on PORT_BASE+2, gRPC inference/management on PORT_BASE+3/+4
#       instead of the fixed 7070/7071, so instances can coexist; token auth off, model API on,
#       default_workers_per_model=WORKERS, model_store=STORE_DIR, load_models=MODELS, e.g.
#       "mobilenet.mar", "a.mar,b.mar" or "all") and launches `torchserve --start --ncs
#       --foreground` in the background, logs in WORK_DIR/logs.
#       MODE "tuned":   OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1 for the Python workers.
#       MODE "default": TorchServe's own threading (both variables unset).
#       Waits until GET /ping is Healthy and every model has all its workers READY
#       (management API GET /models/NAME); prints the seconds from launch to ready on stdout.
#       Fails (and stops the server) when a model fails to load or after TS_START_TIMEOUT
#       seconds (default 300). The previous run's logs are kept in WORK_DIR/logs.prev.
#   serve.sh stop WORK_DIR
#       `torchserve --stop`, then makes sure the Java front end and every worker it spawned
#       are gone (SIGTERM, then SIGKILL, by pid).
#   serve.sh rss WORK_DIR
#       Prints the total RSS in KiB of the Java front end plus all its descendants (the
#       Python workers); a per-process breakdown and the PSS total go to stderr.
#
# Each instance keeps its own TorchServe pid file (TMPDIR=WORK_DIR/tmp), so instances with
# different WORK_DIRs and ports can coexist. Java: $JAVA_HOME/bin/java, else `java` on PATH.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "[torchserve/serve] $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '3,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

now() { date +%s.%N; }

# Direct children / all descendants of a pid, from one ps snapshot.
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      want[root] = 1; changed = 1
      while (changed) {
        changed = 0
        for (i in pids) { p = pids[i]; if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 } }
      }
      for (p in want) if (p != root) print p
    }'
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Start time of a pid in clock ticks since boot (guards against pid reuse).
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

cmd_start() {
  [ $# -eq 6 ] || usage
  local store="$1" work="$2" workers="$3" mode="$4" port="$5" models="$6"
  [ -d "$store" ] || die "model store $store does not exist"
  [[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$workers'"
  [[ "$port" =~ ^[1-9][0-9]*$ ]] || die "PORT_BASE must be a port number, got '$port'"
  store="$(cd "$store" && pwd)"
  mkdir -p "$work"
  work="$(cd "$work" && pwd)"
  if [ -f "$work/launcher.pid" ] && alive "$(cat "$work/launcher.pid")"; then
    die "a TorchServe from $work is already running (pid $(cat "$work/launcher.pid")); stop it first"
  fi

  local venv
  venv="$("$HERE/setup.sh" | tail -n 1)"

  case "$mode" in
    tuned)   export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ;;
    default) unset OMP_NUM_THREADS MKL_NUM_THREADS ;;
    *) die "MODE must be 'tuned' or 'default', got '$mode'" ;;
  esac

  local inf="http://127.0.0.1:$port" mgmt="http://127.0.0.1:$((port + 1))"
  # Keep the previous run's logs as logs.prev (TorchServe appends, and start-up looks for
  # load failures in ts_log.log).
  if [ -d "$work/logs" ]; then rm -rf "$work/logs.prev"; mv "$work/logs" "$work/logs.prev"; fi
  mkdir -p "$work/logs" "$work/tmp"
  rm -f "$work/launcher.pid" "$work/frontend.pid" "$work/tmp/.model_server.pid"
  cat > "$work/config.properties" <<CFG
# written by bench/torchserve/serve.sh ($mode, $workers workers per model)
inference_address=$inf
management_address=$mgmt
metrics_address=http://127.0.0.1:$((port + 2))
grpc_inference_port=$((port + 3))
grpc_management_port=$((port + 4))
disable_token_authorization=true
enable_model_api=true
default_workers_per_model=$workers
model_store=$store
load_models=$models
CFG

  # Model names to wait for: one per entry of MODELS ("name=file.mar" or "file.mar"),
  # or every archive in the store for "all".
  local expected
  if [ "$models" = all ]; then
    expected=$(find "$store" -maxdepth 1 -name '*.mar' | wc -l)
  else
    expected=$(tr ',' '\n' <<<"$models" | grep -c .)
  fi

  local t0 pid
  t0=$(now)
  (
    cd "$work"
    export TMPDIR="$work/tmp" LOG_LOCATION="$work/logs" METRICS_LOCATION="$work/logs"
    exec "$venv/bin/torchserve" --start --ncs --foreground \
      --model-store "$store" --ts-config "$work/config.properties"
  ) >"$work/logs/launcher.log" 2>&1 &
  pid=$!
  echo "$pid" > "$work/launcher.pid"
  log "launched TorchServe (pid $pid, $mode, $workers workers, models: $models) from $work"

  # One poller: /ping Healthy, then every model listed by the management API must have
  # all of its minWorkers READY. Exit 0 ready, 1 launcher died, 2 timeout, 3 load failed.
  local rc=0
  "$venv/bin/python" - "$pid" "$inf" "$mgmt" "$expected" "${TS_START_TIMEOUT:-300}" "$t0" \
      "$work/logs/ts_log.log" <<'PY' || rc=$?
import json, os, sys, time, urllib.request
pid, inf, mgmt, expected, timeout, t0, ts_log = sys.argv[1:]
pid, expected, deadline = int(pid), int(expected), float(t0) + float(timeout)

def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)

def ready():
    try:
        if get(f"{inf}/ping").get("status") != "Healthy":
            return False
        names = [m["modelName"] for m in get(f"{mgmt}/models?limit=1000")["models"]]
        if len(names) < expected:
            return False
        for name in names:
            for version in get(f"{mgmt}/models/{name}"):
                ok = sum(w.get("status") == "READY" for w in version.get("workers", []))
                if ok < max(1, version.get("minWorkers", 1)):
                    return False
        return True
    except (OSError, ValueError, KeyError):
        return False

def load_failed():
    try:
        with open(ts_log, errors="replace") as f:
            text = f.read()
        return "Load model failed" in text or "Failed to load model" in text
    except OSError:
        return False

while not ready():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    if load_failed():
        sys.exit(3)
    if time.time() > deadline:
        sys.exit(2)
    time.sleep(0.1)
PY
  case $rc in
    0) ;;
    1) tail -n 30 "$work/logs/launcher.log" >&2 || true
       die "TorchServe exited during start-up; see $work/logs" ;;
    3) grep -E 'MODEL_LOG - .*(Error|error)|Load model failed|Failed to load model|NotFound' "$work/logs/ts_log.log" | tail -n 10 >&2 || true
       log "a model failed to load; stopping TorchServe (see $work/logs)"
       cmd_stop "$work" || true
       exit 1 ;;
    *) log "not ready after ${TS_START_TIMEOUT:-300}s; stopping it"
       cmd_stop "$work" || true
       exit 1 ;;
  esac
  local t1
  t1=$(now)

  local java
  java=$(cat "$work/tmp/.model_server.pid" 2>/dev/null || true)
  alive "$java" || java=$(descendants "$pid" | head -n 1)
  echo "$java" > "$work/frontend.pid"
  log "ready: front end pid $java, $(descendants "$java" | wc -l) worker processes"
  awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f\n", a - b }'
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local work="$1"
  [ -f "$work/launcher.pid" ] || { log "nothing recorded in $work"; return 0; }
  work="$(cd "$work" && pwd)"
  local launcher
  launcher=$(cat "$work/launcher.pid")

  # Remember the whole tree (pid + start time) before the front end goes away and its
  # workers are re-parented.
  local -a tree=()
  local p
  for p in $launcher $(descendants "$launcher"); do
    alive "$p" && tree+=("$p:$(starttime "$p")")
  done

  if alive "$launcher"; then
    local venv
    venv="$("$HERE/setup.sh" | tail -n 1)"
    (cd "$work" && TMPDIR="$work/tmp" "$venv/bin/torchserve" --stop >&2) || true
  fi

  # still_running: the recorded processes that are still the same processes.
  still_running() {
    local e
    for e in "${tree[@]}"; do
      p=${e%%:*}
      alive "$p" && [ "$(starttime "$p")" = "${e#*:}" ] && echo "$p"
    done
    return 0
  }
  local sig left i
  for sig in none TERM KILL; do
    [ "$sig" = none ] || { left=$(still_running); [ -z "$left" ] || kill "-$sig" $left 2>/dev/null || true; }
    for i in $(seq 1 50); do
      left=$(still_running)
      [ -z "$left" ] && break 2
      sleep 0.2
    done
    log "still running after $([ "$sig" = none ] && echo "torchserve --stop" || echo "SIG$sig"): $(echo $left)"
  done
  left=$(still_running)
  [ -z "$left" ] || die "could not stop: $left"
  rm -f "$work/launcher.pid" "$work/frontend.pid"
  log "stopped (${#tree[@]} processes)"
}

cmd_rss() {
  [ $# -eq 1 ] || usage
  local work="$1" java
  java=$(cat "$work/frontend.pid" 2>/dev/null) || die "no front end recorded in $work"
  alive "$java" || die "front end pid $java is not running"
  local total=0 pss_total=0 p rss pss name
  for p in $java $(descendants "$java"); do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    [ -n "$rss" ] || continue
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    name=$(tr '\0' ' ' < "/proc/$p/cmdline" | grep -o -E 'model_service_worker|java' | head -n 1 || true)
    log "pid $p ${name:-other}: RSS ${rss} KiB, PSS ${pss:-0} KiB"
    total=$((total + rss)); pss_total=$((pss_total + ${pss:-0}))
  done
  log "total PSS ${pss_total} KiB"
  echo "$total"
}

[ $# -ge 1 ] || usage
cmd="$1"; shift
case "$cmd" in
  start) cmd_start "$@" ;;
  stop)  cmd_stop "$@" ;;
  rss)   cmd_rss "$@" ;;
  *) usage ;;
esac
