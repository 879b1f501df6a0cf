#!/usr/bin/env bash
# Leak check of the load scenario: tests/progs/load_target creates and
# destroys threads at a steady rate while concurrent killshim-inject clients
# list it; then it exits normally and the leak checker reports.
#
#   tools/leakcheck.sh [valgrind|lsan|both]   (default: both)
#
# valgrind: memcheck on the normal build (the shim preloaded into the program
#   under valgrind), 200 threads/s for 5 s, 20 clients; installs valgrind with
#   apt-get if it is missing (the test suite does not need it).
# lsan: the --config=asan build (LeakSanitizer at exit), 1,000 threads/s for
#   4 s, 100 clients.
# Exits non-zero if a leak (definite or indirect) is reported.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-both}
WORK=$(mktemp -d /tmp/killshim-leak.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# run_scenario LABEL RATE SECONDS CLIENTS BINDIR -- COMMAND...
run_scenario() {
    local label=$1 rate=$2 secs=$3 clients=$4 bindir=$5
    shift 6
    local in="$WORK/$label.in" out="$WORK/$label.out" err="$WORK/$label.err"
    mkfifo "$in"
    # The fifo stays open for writing on fd 9 until we say quit.
    "$@" "$bindir/tests/progs/load_target" "$rate" "$secs" <"$in" >"$out" 2>"$err" &
    local pid=$!
    exec 9>"$in"
    local target
    for _ in $(seq 600); do
        grep -q ready "$out" 2>/dev/null && break
        sleep 0.1
    done
    target=$(pgrep -P "$pid" -f load_target || echo "$pid")
    # valgrind execs the program in place: the pid is the program's.
    [ -d "/proc/$target" ] || target=$pid
    for _ in $(seq 300); do
        "$bindir/injector/killshim-inject" "$target" >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo go >&9
    local answers="$WORK/$label.answers"
    : >"$answers"
    local lpids=()
    for _ in $(seq "$clients"); do
        (while ! grep -q done "$out"; do
             if "$bindir/injector/killshim-inject" --json "$target" >/dev/null 2>>"$WORK/$label.inject-err"; then
                 echo ok >>"$answers"
             else
                 echo fail >>"$answers"
             fi
         done) &
        lpids+=($!)
    done
    for _ in $(seq 3000); do
        grep -q done "$out" && break
        sleep 0.1
    done
    for p in "${lpids[@]}"; do wait "$p" || true; done
    echo quit >&9
    exec 9>&-
    local rc=0
    wait "$pid" || rc=$?
    local ok fail
    ok=$(grep -c ok "$answers" || true)
    fail=$(grep -c fail "$answers" || true)
    echo "[$label] $(grep done "$out" || echo 'no done line'); exit $rc; $ok answers ok, $fail failed"
    LEAK_RC=$rc
    LEAK_ERR=$err
}

status=0
if [ "$MODE" = valgrind ] || [ "$MODE" = both ]; then
    if ! command -v valgrind >/dev/null; then
        echo "leakcheck: installing valgrind (apt-get)" >&2
        apt-get install -y -qq --no-install-recommends valgrind >/dev/null
    fi
    bazel build //shim:libkillshim.so //injector:killshim-inject //tests/progs:load_target >/dev/null 2>&1
    BIN=$(bazel info bazel-bin 2>/dev/null)
    run_scenario valgrind 200 5 20 "$BIN" -- env LD_PRELOAD="$BIN/shim/libkillshim.so" \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=42 --fair-sched=yes
    grep -E "definitely lost|indirectly lost|possibly lost|still reachable|ERROR SUMMARY" "$LEAK_ERR" | sed 's/^==[0-9]*== */  valgrind: /'
    grep -q "ERROR SUMMARY: 0 errors" "$LEAK_ERR" || { status=1; grep -A20 "definitely lost in" "$LEAK_ERR" | head -60; }
    [ "$LEAK_RC" -eq 0 ] || status=1
fi
if [ "$MODE" = lsan ] || [ "$MODE" = both ]; then
    bazel build --config=asan //shim:libkillshim.so //injector:killshim-inject //tests/progs:load_target >/dev/null 2>&1
    BIN=$(bazel info --config=asan bazel-bin 2>/dev/null)
    export ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1
    run_scenario lsan 1000 4 100 "$BIN" -- env LD_PRELOAD="$BIN/shim/libkillshim.so"
    if grep -q "LeakSanitizer" "$LEAK_ERR"; then
        status=1
        grep -A30 "LeakSanitizer" "$LEAK_ERR" | head -60
    else
        echo "  lsan: no leaks reported (exit $LEAK_RC)"
    fi
    [ "$LEAK_RC" -eq 0 ] || status=1
fi
exit $status
