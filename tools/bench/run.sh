#!/bin/sh
# killshim benchmarks (issue 6): builds everything, runs every benchmark once,
# prints each result next to its baseline from the same run, then a table.
# Benchmarks measure; they never fail on a slow figure (exit 0 unless the
# build or a tool is broken).
#
#   tools/bench/run.sh            the full run (a few minutes)
#   KB_RUNS=5 tools/bench/run.sh  fewer rounds per benchmark
#   KB_ONLY=carry|act|scale       one part only
#   KB_SVG=docs/bench-scale.svg   also copy the scaling plot there
#
# Missing tools (xz-utils, gdb, elfutils, gnuplot-nox) are installed with apt-get when run
# as root; otherwise the benchmarks that need them are skipped with a note.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
RUNS=${KB_RUNS:-10}
ONLY=${KB_ONLY:-all}
WORKDIR=${TMPDIR:-/tmp}/killshim-bench
LOG=$WORKDIR/results.txt
mkdir -p "$WORKDIR"

note() { echo "bench: $*" >&2; }

# ---- tools ------------------------------------------------------------------
install_for() {   # install_for COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        note "installing $2 (for $1)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" \
            >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" \
            >/dev/null 2>&1; } || true
    fi
    command -v "$1" >/dev/null 2>&1 || { note "$1 not available: skipping what needs it"; return 1; }
}
HAVE_XZ=1; install_for xz xz-utils || HAVE_XZ=0
install_for gdb gdb || true
install_for eu-stack elfutils || true
HAVE_GNUPLOT=1; install_for gnuplot gnuplot-nox || HAVE_GNUPLOT=0
FEW=$(( RUNS < 5 ? RUNS : 5 ))

# ---- build ------------------------------------------------------------------
note "building"
bazel build --noshow_progress //shim:libkillshim.so //injector:killshim-inject //tools/bench:all
BIN=$ROOT/bazel-bin
SHIM=$BIN/shim/libkillshim.so
INJECT=$BIN/injector/killshim-inject
AB=$BIN/tools/bench/bench_ab
PAIR=$BIN/tools/bench/bench_pair
WORK=$BIN/tools/bench/bench_work
TARGET=$BIN/tools/bench/bench_target

: >"$LOG"
section() { printf '\n== %s\n' "$1" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; }
row() { printf 'ROW|%s\n' "$1" | tee -a "$LOG"; }

{
    echo "killshim benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), rounds per benchmark: $RUNS"
} | tee -a "$LOG"

# ---- 1. the cost of carrying the shim ----------------------------------------
if [ "$ONLY" = all ] || [ "$ONLY" = carry ]; then
    section "1. cost of carrying the shim (runs alternate with and without LD_PRELOAD)"
    # A few percent of a few microseconds: one long-lived process per side,
    # both on CPU 0, batches of 50 threads interleaved in shuffled order
    # (bench_pair); the row is the median of each round's ratio. The empty
    # library beside it is the null check: its ratio is the noise floor.
    for clock in "" -cpu; do
        run "$PAIR" -s "$SHIM" -s "empty library=$BIN/tools/bench/libempty.so" -c 0 \
            -n $((RUNS * 200)) -r 1.03 -T "<= 3% slower" \
            -l "thread create+join, ${clock:+CPU }time per thread (CPU 0)" \
            -- "$WORK" serve-threads$clock 50
    done
    run "$AB" -s "$SHIM" -n "$RUNS" -l "uncontended mutex lock+unlock pair (program with 2 threads)" \
        -g ratio:1.2 -T "<= 1.2x" -- "$WORK" mutex-mt 10000000
    run "$AB" -s "$SHIM" -n "$RUNS" -l "uncontended mutex lock+unlock pair (single-threaded program)" \
        -g ratio:1.2 -T "<= 1.2x" -- "$WORK" mutex 10000000
    # A program that starts threads all the time (a server with a thread
    # per request): CPU per thread at a paced rate, and flat out (2
    # creators; the rate reached is in the log).
    for rate in 1000 100000; do
        run "$AB" -s "$SHIM" -n "$FEW" \
            -l "carrying cost at $rate thread creations/s: CPU time per thread created" \
            -- "$WORK" rate "$rate"
    done
    if [ "$HAVE_XZ" = 1 ]; then
        XZIN=$WORKDIR/xz-input-12MiB
        [ -s "$XZIN" ] || "$WORK" gen 12 >"$XZIN"
        run "$AB" -s "$SHIM" -w -n "$RUNS" -l "xz -T2 -0 on 12 MiB of generated text, wall time" \
            -g ratio:1.01 -T "within 1%" -- xz -T2 -0 -c "$XZIN"
    fi
    run "$AB" -s "$SHIM" -w -n 300 -W 20 -l "process start-up and exit: /bin/true, wall time" \
        -g diff:1e6 -T "<= +1 ms" -- /bin/true
    # The floor: any preloaded library costs the loader this much.
    run "$AB" -s "$BIN/tools/bench/libempty.so" -w -n 300 -W 20 \
        -l "process start-up and exit: /bin/true, an empty library preloaded instead" -- /bin/true
    # A single-threaded program that forks (make, a shell): the shim starts
    # no thread until asked, so the program stays single-threaded.
    run "$AB" -s "$SHIM" -n "$RUNS" -l "fork + _exit + waitpid, single-threaded program" \
        -g ratio:1.05 -T "<= 5% slower" -- "$WORK" fork 2000
    # The same without the control thread, socket and signals: splits the
    # start-up cost between loading the libraries and starting the server.
    run env KILLSHIM_DISABLE=1 "$AB" -s "$SHIM" -w -n 300 -W 20 \
        -l "process start-up and exit: /bin/true, shim loaded with KILLSHIM_DISABLE=1" -- /bin/true
    # posix_spawn of /bin/true in rounds, best and median round: what any
    # preloaded library costs (an empty one) next to the shim's loading
    # (KILLSHIM_DISABLE=1) and the whole shim.
    run "$BIN/tools/bench/bench_startup" -n 300 -r 5 plain=- \
        empty-library=LD_PRELOAD="$BIN/tools/bench/libempty.so" \
        shim-disabled=LD_PRELOAD="$SHIM",KILLSHIM_DISABLE=1 shim=LD_PRELOAD="$SHIM"
    # The doorbell's safety walk in a signal handler's place: the shim's CFI
    # stepper against the libunwind walk it replaced (same stack, same run).
    run "$BIN/tools/bench/bench_walk" 8
    run "$AB" -s "$SHIM" -n "$RUNS" -u bytes -l "RSS per thread (1000 parked threads, default stacks)" \
        -- "$WORK" mem-thread 1000
    run "$AB" -s "$SHIM" -n "$RUNS" -u bytes -l "RSS per thread (1000 parked threads that used malloc once)" \
        -- "$WORK" mem-thread-malloc 1000
    run "$AB" -s "$SHIM" -n "$RUNS" -u bytes -l "RSS of an idle program (fixed cost)" \
        -- "$WORK" mem-fixed
    # The record's size as compiled, and the static TLS the shim's objects
    # add to every thread (PT_TLS of the library: the record and any other
    # thread-local of the shim).
    SZ=$(printf '#include <stdio.h>\n#include "shim/core/registry.h"\nint main(void){printf("%%zu\\n", sizeof(struct ks_thread));return 0;}\n' |
         gcc -D_GNU_SOURCE -I"$ROOT" -x c - -o "$WORKDIR/sizeof" && "$WORKDIR/sizeof") || SZ="?"
    TLS=$(readelf -lW "$SHIM" | awk '$1 == "TLS" { print $6 }')
    TLS=$(( ${TLS:-0} ))
    echo "  registry record: sizeof(struct ks_thread) = $SZ B; the shim's PT_TLS MemSiz = $TLS B" | tee -a "$LOG"
    row "registry record per thread: sizeof(struct ks_thread)|$SZ B|exact|–|–|–|–"
    row "static TLS the shim adds to every thread (PT_TLS)|$TLS B|exact|–|–|–|–"
fi

# ---- 2. speed of acting -------------------------------------------------------
if [ "$ONLY" = all ] || [ "$ONLY" = act ]; then
    section "2. speed of acting (killshim-inject next to gdb, same target, same run)"
    G=""; command -v gdb >/dev/null 2>&1 || G="-G"
    # shellcheck disable=SC2086
    run "$BIN/tools/bench/bench_act" -s "$SHIM" -i "$INJECT" -p "$TARGET" -n "$RUNS" $G
    # The same under load: 10 and 1,000 other threads of the target spin
    # on 2 cores (the scheduler's share, then, is most of it).
    for busy in 10 1000; do
        section "2. speed of acting with $busy other threads busy"
        # shellcheck disable=SC2086
        run "$BIN/tools/bench/bench_act" -s "$SHIM" -i "$INJECT" -p "$TARGET" -n "$FEW" -b "$busy" $G
    done
fi

# The medians against thread count, one line per tool (bench_scale's PLOT
# lines), log-log, as SVG.
plot_scale() {
    [ "$HAVE_GNUPLOT" = 1 ] || { note "no gnuplot: no plot"; return 0; }
    DAT=$WORKDIR/scale.dat
    SVG=$WORKDIR/scale.svg
    grep '^PLOT|' "$LOG" | awk -F'|' '{ printf "\"%s\" %s %.3f\n", $2, $3, $4 / 1e6 }' >"$DAT"
    [ -s "$DAT" ] || return 0
    {
        echo "set terminal svg size 800,500 dynamic font 'sans,12' background rgb 'white'"
        echo "set output '$SVG'"
        echo "set title 'killshim-inject and its peers: time against thread count ($(nproc) cores, $(date -u +%Y-%m-%d))'"
        echo "set logscale xy; set grid"
        echo "set xlabel 'threads in the process'; set ylabel 'median time, ms'"
        echo "set key top left"
        printf "plot "
        sep=""
        awk -F'"' '{ print $2 }' "$DAT" | awk '!seen[$0]++' | while read -r tool; do
            printf "%s'%s' using 1:2 with linespoints title '%s'" "$sep" \
                "$WORKDIR/scale-$(echo "$tool" | tr -c 'a-zA-Z0-9' '_').dat" "$tool"
            grep -F "\"$tool\"" "$DAT" | sed 's/^"[^"]*" //' | sort -n \
                >"$WORKDIR/scale-$(echo "$tool" | tr -c 'a-zA-Z0-9' '_').dat"
            sep=", "
        done
        echo
    } >"$WORKDIR/scale.gp"
    gnuplot "$WORKDIR/scale.gp" && note "plot: $SVG"
    if [ -n "${KB_SVG:-}" ] && [ -s "$SVG" ]; then cp "$SVG" "$KB_SVG"; fi
}

# ---- 3. scale ----------------------------------------------------------------
if [ "$ONLY" = all ] || [ "$ONLY" = scale ]; then
    for n in 10 100 1000 10000; do
        # gdb takes tens of seconds at 10,000 threads: left out there.
        if [ "$n" -ge 10000 ]; then r=$FEW g=0 e=1; else r=$RUNS g=3 e=3; fi
        section "3. scale: $n threads"
        run "$BIN/tools/bench/bench_scale" -s "$SHIM" -i "$INJECT" -p "$TARGET" -N "$n" \
            -n "$r" -g "$g" -e "$e"
    done
    plot_scale
fi

# ---- table --------------------------------------------------------------------
{
    echo
    echo "| what | median | spread (min – max) | baseline: median [spread] | ratio (difference) | target | met? |"
    echo "|---|---|---|---|---|---|---|"
    grep '^ROW|' "$LOG" | awk -F'|' '{ printf "|"; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }'
} | tee "$WORKDIR/table.md"
note "log: $LOG  table: $WORKDIR/table.md"
