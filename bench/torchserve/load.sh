#!/usr/bin/env bash
# bench/torchserve/load.sh — drive an inference endpoint with ApacheBench and summarise.
#
# Usage: bench/torchserve/load.sh URL BODY_FILE CONCURRENCY REQUESTS
#
# POSTs BODY_FILE (Content-Type application/octet-stream) to URL with HTTP keep-alive:
# first a warm-up of max(2*CONCURRENCY, 20) requests that is not counted, then
#   ab -k -n REQUESTS -c CONCURRENCY -p BODY_FILE -T application/octet-stream -e CSV URL
# and prints one JSON line on stdout:
#   {"rps": <requests/s>, "p50_ms": <ms>, "p99_ms": <ms>, "failed": <count>}
# The percentiles come from ab's -e CSV table (microsecond resolution) rather than its
# whole-millisecond text table. ab indexes its sorted times at round(n*pct/100), which runs
# past the end for p99 when REQUESTS <= 50; then the maximum is used.
# "failed" = ab's failed requests (connect, receive and exception errors; "Length"
# mismatches, which only mean the body size varied, are excluded and reported on stderr)
# + non-2xx responses, at most REQUESTS (ab can count one request in both).
# ab's summary lines (including "Keep-Alive requests") go to stderr.
# Requires `ab` (apache2-utils; bench/torchserve/setup.sh installs it).
set -euo pipefail

if [ $# -ne 4 ]; then
  echo "usage: $0 URL BODY_FILE CONCURRENCY REQUESTS" >&2
  exit 2
fi
url="$1" body="$2" conc="$3" n="$4"
[ -f "$body" ] || { echo "no such body file: $body" >&2; exit 1; }
[[ "$conc" =~ ^[1-9][0-9]*$ && "$n" =~ ^[1-9][0-9]*$ ]] || { echo "CONCURRENCY and REQUESTS must be positive integers" >&2; exit 2; }
[ "$n" -ge "$conc" ] || { echo "REQUESTS must be >= CONCURRENCY" >&2; exit 2; }
command -v ab >/dev/null || { echo "ab not found; run bench/torchserve/setup.sh" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

AB=(ab -k -c "$conc" -p "$body" -T application/octet-stream)

warm=$(( 2 * conc > 20 ? 2 * conc : 20 ))
if ! "${AB[@]}" -n "$warm" "$url" >"$tmp/warm.txt" 2>&1; then
  cat "$tmp/warm.txt" >&2; echo "warm-up failed" >&2; exit 1
fi

if ! "${AB[@]}" -n "$n" -e "$tmp/perc.csv" "$url" >"$tmp/ab.txt" 2>&1; then
  cat "$tmp/ab.txt" >&2; echo "ab failed" >&2; exit 1
fi
grep -E '^(Complete requests|Failed requests|Non-2xx|Keep-Alive requests|Requests per second|Time per request|   \(Connect)' "$tmp/ab.txt" | sed 's/^/[load] /' >&2 || true

awk -F'[:,()]' -v n="$n" '
  FNR == NR {
    # ab text report
    if ($0 ~ /^Requests per second:/) { split($2, a, " "); rps = a[1] }
    else if ($0 ~ /^Failed requests:/) { failed = $2 + 0 }
    else if ($0 ~ /^Non-2xx responses:/) { non2xx = $2 + 0 }
    else if ($0 ~ /^ +\(Connect: /) {
      for (i = 1; i <= NF; i++) if ($i ~ /Length/) { split($(i+1), b, " "); length_mm = b[1] + 0 }
    }
    next
  }
  # ab -e CSV: "percentage,time in ms"
  $1 == "50" { p50 = $2 } $1 == "99" { p99 = $2 } $1 == "100" { pmax = $2 }
  END {
    if (int(0.5 + n * 99 / 100) >= n) p99 = pmax
    bad = failed - length_mm + non2xx
    if (bad > n) bad = n
    if (rps == "" || p50 == "" || p99 == "") { print "could not parse ab output" > "/dev/stderr"; exit 1 }
    if (length_mm > 0) printf "[load] %d responses differed in length only (not counted as failed)\n", length_mm > "/dev/stderr"
    printf "{\"rps\": %.2f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"failed\": %d}\n", rps, p50, p99, bad
  }' "$tmp/ab.txt" "$tmp/perc.csv"
