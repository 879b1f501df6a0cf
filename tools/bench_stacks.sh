#!/bin/sh
# How long killshim-inject --stack takes on a program with many threads.
#
#   tools/bench_stacks.sh [THREADS] [RUNS] [SPINNERS]     (defaults 1000 20 0)
#
# Starts tests/progs/many THREADS SPINNERS under the shim (a quarter each in
# pthread_cond_wait, sleep, read and epoll_wait; SPINNERS of the sleepers in
# a busy loop instead), then dumps it RUNS times with --stack --json. Prints
# the shim's capture time (the "capture_us" it reports: listing, unwinding,
# signalling and waiting for every thread) and the whole command's wall time
# (connect, capture, symbolize with libdw, JSON), as min / median / max.
# Needs a build first: bazel build //shim:libkillshim.so //injector:killshim-inject //tests/progs:many
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000}
RUNS=${2:-20}
SPIN=${3:-0}
BIN=bazel-bin
for f in "$BIN/shim/libkillshim.so" "$BIN/injector/killshim-inject" "$BIN/tests/progs/many"; do
    [ -e "$f" ] || { echo "missing $f: run bazel build first" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'kill $feeder 2>/dev/null; kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
mkfifo "$tmp/in"
sleep 100000 > "$tmp/in" &
feeder=$!
LD_PRELOAD="$PWD/$BIN/shim/libkillshim.so" "$BIN/tests/progs/many" "$N" "$SPIN" \
    < "$tmp/in" > "$tmp/out" 2>&1 &
pid=$!
i=0
until grep -q ready "$tmp/out"; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "program did not start" >&2; exit 1; }
    sleep 0.1
done
: > "$tmp/capture"; : > "$tmp/wall"
r=0
while [ $r -lt "$RUNS" ]; do
    t0=$(date +%s%N)
    "$BIN/injector/killshim-inject" --stack --json "$pid" > "$tmp/dump"
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >> "$tmp/wall"
    sed -n 's/.*"capture_us":\([0-9]*\).*/\1/p' "$tmp/dump" | head -1 >> "$tmp/capture"
    r=$((r + 1))
done
threads=$(grep -c '"tid":' "$tmp/dump" || true)
stats() {
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        printf "min %.1f ms, median %.1f ms, max %.1f ms\n", v[1] / 1000, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
}
echo "threads dumped: $threads (program: $N workers + main, $SPIN spinning), $RUNS runs, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "capture in the shim:  $(stats "$tmp/capture")"
echo "whole --stack --json: $(stats "$tmp/wall")"
