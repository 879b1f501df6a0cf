#!/bin/sh
# Throughput of Debian's redis-server with and without the shim, in the same
# run: rounds alternate the order (ABBA), each starts a fresh server on a free
# loopback port (I/O threads on), loads it with redis-benchmark, and shuts it
# down. Prints, per command, the median requests per second of each side,
# the spread (min - max) and the ratio of the medians (shim / plain).
# Measures; never fails on a slow figure.
#
#   tools/bench/redis.sh                 5 rounds per side
#   KB_RUNS=9 KB_REQUESTS=400000 tools/bench/redis.sh
#   SHIM=/path/to/libkillshim.so tools/bench/redis.sh   (skips the build)
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${KB_RUNS:-5}
REQUESTS=${KB_REQUESTS:-200000}
TESTS=${KB_TESTS:-set,get,incr,lpush}
WORKDIR=${TMPDIR:-/tmp}/killshim-bench-redis
mkdir -p "$WORKDIR"
note() { echo "redis bench: $*" >&2; }

for c in redis-server redis-benchmark redis-cli; do
    command -v $c >/dev/null 2>&1 || { note "$c missing (tools/setup.sh installs redis-server, redis-tools)"; exit 1; }
done
if [ -z "${SHIM:-}" ]; then
    (cd "$ROOT" && bazel build --noshow_progress //shim:libkillshim.so)
    SHIM=$ROOT/bazel-bin/shim/libkillshim.so
fi

# A loopback port nobody listens on (from /proc/net/tcp, state 0A).
free_port() {
    p=$((20000 + $$ % 20000))
    while grep -qi ":$(printf '%04X' $p) [0-9A-F]*:0000 0A" /proc/net/tcp 2>/dev/null; do
        p=$((p + 1))
    done
    echo $p
}

# one_run SIDE: a fresh server, one load, CSV lines appended to SIDE.csv.
one_run() {
    side=$1
    port=$(free_port)
    if [ "$side" = shim ]; then pre=$SHIM; else pre=""; fi
    LD_PRELOAD=$pre redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --io-threads 2 --io-threads-do-reads yes --dir "$WORKDIR" \
        --logfile "$WORKDIR/$side.log" --daemonize no &
    pid=$!
    i=0
    until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || { note "server ($side) did not answer"; kill "$pid"; exit 1; }
        sleep 0.05
    done
    redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$REQUESTS" -t "$TESTS" --threads 2 --csv |
        tail -n +2 >>"$WORKDIR/$side.csv"
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || { note "server ($side) exited with status $?"; exit 1; }
}

rm -f "$WORKDIR/plain.csv" "$WORKDIR/shim.csv"
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $(nproc) cores," \
     "load: $(cut -d' ' -f1-3 /proc/loadavg), $RUNS rounds per side, $REQUESTS requests per command"
r=0
while [ $r -lt "$RUNS" ]; do
    if [ $((r % 2)) -eq 0 ]; then one_run plain; one_run shim; else one_run shim; one_run plain; fi
    r=$((r + 1))
done

# "TEST","rps",... -> per test: sorted rps of each side, median, min, max.
summary() {
    awk -F'"' -v side="$1" '{ print side, $2, $4 }' "$WORKDIR/$1.csv"
}
{ summary plain; summary shim; } | sort -k2,2 -k1,1 -k3,3n | awk '
    { key = $1 " " $2; v[key, ++n[key]] = $3; tests[$2] = 1 }
    function med(k,   c) { c = n[k]; return c % 2 ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2 }
    END {
        printf "%-8s %14s %22s %14s %22s %8s\n", "command", "plain median", "plain min - max", "shim median", "shim min - max", "ratio"
        for (t in tests) {
            p = "plain " t; s = "shim " t
            printf "%-8s %14.0f %10.0f - %9.0f %14.0f %10.0f - %9.0f %8.3f\n", t, med(p), v[p, 1], v[p, n[p]],
                   med(s), v[s, 1], v[s, n[s]], med(s) / med(p)
        }
    }'
