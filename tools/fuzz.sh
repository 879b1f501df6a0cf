#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (-fsanitize=fuzzer,address,undefined)
# and runs each for a while from its committed seed corpus.
#
#   tools/fuzz.sh [--seconds N] [--merge] [TARGET...]
#
# TARGETs are the names of tests/fuzz/*_fuzz.c without the suffix (default:
# all). --seconds: run time per target (default 20, or $FUZZ_SECONDS).
# --merge: fold new coverage back into tests/fuzz/corpus/TARGET (minimized)
# for a commit. Without it the committed corpus is left as is; new inputs go
# to a scratch copy. A crash leaves its input in $OUT/TARGET/ and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=${FUZZ_SECONDS:-20}
MERGE=0
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER=$2; shift 2 ;;
        --merge) MERGE=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
if [ ${#TARGETS[@]} -eq 0 ]; then
    for f in tests/fuzz/*_fuzz.c; do
        t=$(basename "$f" _fuzz.c)
        TARGETS+=("$t")
    done
fi

CC=${CC:-clang-14}
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (tools/setup.sh installs it)" >&2; exit 2; }
OUT=${FUZZ_OUT:-${TMPDIR:-/tmp}/killshim-fuzz}
mkdir -p "$OUT"
CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I."

# Sources each target links besides its own file: the shim's .c files (in
# any of its packages, //shim/common:proto.c...) its corpus test depends on
# in tests/fuzz/BUILD (one list, Bazel's).
sources_for() {
    bazel query --noshow_progress \
        "filter('^//(shim|injector)(/[a-z_]+)*:[a-z_0-9]+\\.c\$', kind('source file', deps(//tests/fuzz:$1_corpus_test)))" \
        2>/dev/null | sed 's|^//||; s|:|/|'
}

# Libraries a target's sources need (its corpus test gets them from Bazel).
libs_for() {
    case "$1" in
    dwline) echo "-lelf -ldeflate" ;;
    esac
}

# Compile flags a target's sources need.
cflags_for() {
    case "$1" in
    # The stepper's and the DWARF reader's (dwarf_rd.c) reads are
    # uninstrumented in the shim (the stepper probes stack pages first, ASan's
    # redzones included); here ASan must see each one.
    cfi|lsda) echo "-DKS_CFI_SAFE=" ;;
    esac
}

status=0
printf '%-10s %10s %10s %8s  %s\n' target runs corpus cov result
for t in "${TARGETS[@]}"; do
    src="tests/fuzz/${t}_fuzz.c"
    [ -f "$src" ] || { echo "fuzz.sh: no $src" >&2; exit 2; }
    bin="$OUT/$t/fuzz"
    mkdir -p "$OUT/$t/work"
    # shellcheck disable=SC2046
    $CC $CFLAGS $(cflags_for "$t") "$src" $(sources_for "$t") -o "$bin" $(libs_for "$t")
    seeds="tests/fuzz/corpus/$t"
    cp -f "$seeds"/* "$OUT/$t/work/" 2>/dev/null || true
    log="$OUT/$t/log"
    rc=0
    (cd "$OUT/$t" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ./fuzz -max_total_time="$SECONDS_PER" -max_len=8192 -timeout=10 \
        -print_final_stats=1 work >"$log" 2>&1) || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ncorp=$(find "$OUT/$t/work" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="FAILED (see $log; crash input in $OUT/$t/)"
        status=1
        grep -m5 -E 'ERROR|SUMMARY|runtime error' "$log" >&2 || tail -20 "$log" >&2
    fi
    printf '%-10s %10s %10s %8s  %s\n' "$t" "${runs:-?}" "$ncorp" "${cov:-?}" "$result"
    if [ $MERGE -eq 1 ] && [ $rc -eq 0 ]; then
        mkdir -p "$OUT/$t/merged"
        rm -f "$OUT/$t/merged"/*
        (cd "$OUT/$t" && ./fuzz -merge=1 merged work >/dev/null 2>&1)
        for f in "$OUT/$t/merged"/*; do cp -n "$f" "$seeds/"; done
        echo "  merged: $(ls "$seeds" | wc -l) inputs in $seeds"
    fi
done
exit $status
