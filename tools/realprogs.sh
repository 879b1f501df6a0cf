#!/usr/bin/env bash
# Runs multithreaded programs nobody here wrote, with and without the shim,
# and compares what they produce. While each runs under the shim, a
# killshim-inject client lists its threads in a loop (so the control side is
# busy too). Prints a table; docs/robust.md has the last results.
#
#   tools/realprogs.sh [--size MB] [--quick]
#
# Programs: xz -T2, zstd -T2, pigz -p 2 (compress + decompress round trips,
# checksums compared: the compressed bytes must be identical with and
# without the shim, and the round trip must give the input back), sort
# --parallel=2 (output checksums), and GLib's own thread test programs from
# Debian's libglib2.0-tests (TAP results compared test by test).
# Installs with apt-get what is missing (xz-utils zstd pigz
# libglib2.0-tests): the test suite does not need these, except xz-utils.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=64
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE_MB=$2; shift 2 ;;
        --quick) QUICK=1; SIZE_MB=8; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "realprogs: unknown option $1" >&2; exit 2 ;;
    esac
done

need=""
for p in xz-utils zstd pigz coreutils libglib2.0-tests; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    echo "realprogs: installing$need (apt-get)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

bazel build //shim:libkillshim.so //injector:killshim-inject >/dev/null 2>&1
BIN=$(bazel info bazel-bin 2>/dev/null)
SHIM=$BIN/shim/libkillshim.so
INJECT=$BIN/injector/killshim-inject
WORK=$(mktemp -d /tmp/killshim-realprogs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Input: half text (sortable lines), half random bytes.
half=$((SIZE_MB * 1024 * 1024 / 2))
{ awk 'BEGIN { for (i = 1; ; i++) printf "%08d line %d %s\n", (i * 7919) % 1000003, i, (i % 7 ? "alpha" : "omega") }' || true; } |
    head -c "$half" >"$WORK/text"
head -c "$half" /dev/urandom >"$WORK/rand"
cat "$WORK/text" "$WORK/rand" >"$WORK/input"
IN_SUM=$(sha256sum <"$WORK/input" | cut -c1-16)

now() { date +%s.%N; }
elapsed() { echo "$1 $2" | awk '{printf "%.2f", $2 - $1}'; }

# Lists PID's threads until it exits; prints how many listings succeeded and
# the most threads seen.
lister() {
    local pid=$1 ok=0 most=0 n
    while kill -0 "$pid" 2>/dev/null; do
        if out=$("$INJECT" --json --all "$pid" 2>/dev/null); then
            ok=$((ok + 1))
            n=$(grep -o '"tid"' <<<"$out" | wc -l)
            [ "$n" -gt "$most" ] && most=$n
        fi
    done
    echo "$ok $most"
}

# run MODE STDIN STDOUT CMD... : runs CMD without the shim (plain), under
# it (quiet), or under it with a lister beside it (shim).
# Sets RUN_SECS, RUN_RC, RUN_LISTS, RUN_THREADS.
run() {
    local mode=$1 stdin=$2 stdout=$3
    shift 3
    local t0 t1 pid
    t0=$(now)
    if [ "$mode" = quiet ]; then
        RUN_RC=0; LD_PRELOAD=$SHIM "$@" <"$stdin" >"$stdout" 2>>"$WORK/stderr.shim" || RUN_RC=$?
        RUN_LISTS=-; RUN_THREADS=-
    elif [ "$mode" = shim ]; then
        LD_PRELOAD=$SHIM "$@" <"$stdin" >"$stdout" 2>>"$WORK/stderr.$mode" &
        pid=$!
        lister "$pid" >"$WORK/lister" &
        local lp=$!
        RUN_RC=0; wait "$pid" || RUN_RC=$?
        wait "$lp" || true
        read -r RUN_LISTS RUN_THREADS <"$WORK/lister"
    else
        RUN_RC=0; "$@" <"$stdin" >"$stdout" 2>>"$WORK/stderr.$mode" || RUN_RC=$?
        RUN_LISTS=-; RUN_THREADS=-
    fi
    t1=$(now)
    RUN_SECS=$(elapsed "$t0" "$t1")
}

ROWS=()
FAIL=0
row() { ROWS+=("$(printf '%-26s %8s %8s %-10s %-10s %6s %7s' "$@")"); }

compressor() {
    local name=$1 ext=$2
    shift 2
    local c=("$@")
    local d=()
    case "$name" in
        xz*) d=(xz -d -T2 -c) ;;
        zstd*) d=(zstd -d -T2 -q -c) ;;
        pigz*) d=(pigz -d -p 2 -c) ;;
    esac
    local plain shim same trip lists threads
    run plain "$WORK/input" "$WORK/out.plain.$ext" "${c[@]}"
    local plain_rc=$RUN_RC plain_s=$RUN_SECS
    run quiet "$WORK/input" "$WORK/out.quiet.$ext" "${c[@]}"
    local shim_s=$RUN_SECS quiet_rc=$RUN_RC
    cmp -s "$WORK/out.plain.$ext" "$WORK/out.quiet.$ext" || quiet_rc=diff
    run shim "$WORK/input" "$WORK/out.shim.$ext" "${c[@]}"
    local shim_rc=$RUN_RC$quiet_rc
    lists=$RUN_LISTS threads=$RUN_THREADS
    if cmp -s "$WORK/out.plain.$ext" "$WORK/out.shim.$ext"; then same=identical; else same=DIFFERENT; fi
    run shim "$WORK/out.shim.$ext" "$WORK/back" "${d[@]}"
    local back_rc=$RUN_RC
    lists=$((lists + RUN_LISTS))
    if [ "$(sha256sum <"$WORK/back" | cut -c1-16)" = "$IN_SUM" ]; then trip=ok; else trip=BAD; fi
    [ "$plain_rc$shim_rc$back_rc" = 0000 ] || { same="$same(rc)"; FAIL=1; }
    [ "$same" = identical ] && [ "$trip" = ok ] || FAIL=1
    row "$name" "$plain_s" "$shim_s" "$same" "$trip" "$lists" "$threads"
}

compressor "xz -T2 -6" xz xz -T2 -6 -c
compressor "zstd -T2 -12" zst zstd -T2 -12 -q -c
compressor "pigz -p 2 -9" gz pigz -p 2 -9 -c

# sort: output of the text half.
run plain "$WORK/text" "$WORK/sorted.plain" sort --parallel=2 -S 16M -T "$WORK"
p_s=$RUN_SECS; p_rc=$RUN_RC
run quiet "$WORK/text" "$WORK/sorted.quiet" sort --parallel=2 -S 16M -T "$WORK"
q_s=$RUN_SECS; cmp -s "$WORK/sorted.plain" "$WORK/sorted.quiet" || p_rc=diff
run shim "$WORK/text" "$WORK/sorted.shim" sort --parallel=2 -S 16M -T "$WORK"
if cmp -s "$WORK/sorted.plain" "$WORK/sorted.shim" && [ "$p_rc$RUN_RC" = 00 ]; then same=identical; else same=DIFFERENT; FAIL=1; fi
if sort -c "$WORK/sorted.shim" 2>/dev/null; then trip=sorted; else trip=UNSORTED; FAIL=1; fi
row "sort --parallel=2 -S 16M" "$p_s" "$q_s" "$same" "$trip" "$RUN_LISTS" "$RUN_THREADS"

# GLib's own thread tests (TAP): every test's ok/not ok must match.
GT=/usr/libexec/installed-tests/glib
GLIB_TESTS="mutex rec-mutex rwlock cond once thread thread-pool asyncqueue atomic 1bit-mutex bitlock private cancellable task contexts spawn-multithreaded mainloop gdbus-threading"
[ $QUICK -eq 1 ] && GLIB_TESTS="mutex cond thread thread-pool asyncqueue"
g_pass=0; g_total=0; g_same=0; g_tests=0; g_plain_s=0; g_shim_s=0; g_lists=0; g_diff=""
for t in $GLIB_TESTS; do
    [ -x "$GT/$t" ] || continue
    g_tests=$((g_tests + 1))
    (cd "$GT" && run plain /dev/null "$WORK/tap.plain" timeout 300 "./$t" --tap
     echo "$RUN_SECS" >"$WORK/secs.plain")
    (cd "$GT" && run quiet /dev/null "$WORK/tap.quiet" timeout 300 "./$t" --tap
     echo "$RUN_SECS" >"$WORK/secs.quiet"
     run shim /dev/null "$WORK/tap.shim" timeout 300 "./$t" --tap
     echo "$(cat "$WORK/secs.quiet") $RUN_LISTS" >"$WORK/secs.shim")
    res_plain=$(grep -E '^(not )?ok ' "$WORK/tap.plain" | sed -E 's/^(not ok|ok) [0-9]+ /\1 /' | sort)
    res_shim=$(grep -E '^(not )?ok ' "$WORK/tap.shim" | sed -E 's/^(not ok|ok) [0-9]+ /\1 /' | sort)
    res_quiet=$(grep -E '^(not )?ok ' "$WORK/tap.quiet" | sed -E 's/^(not ok|ok) [0-9]+ /\1 /' | sort)
    [ "$res_quiet" = "$res_shim" ] || res_shim="$res_shim (differs without the lister)"
    n=$(grep -c . <<<"$res_shim" || true)
    g_total=$((g_total + n))
    g_pass=$((g_pass + $(grep -c '^ok ' <<<"$res_shim" || true)))
    if [ "$res_plain" = "$res_shim" ] && [ "$n" -gt 0 ]; then g_same=$((g_same + 1)); else g_diff="$g_diff $t"; FAIL=1; fi
    g_plain_s=$(echo "$g_plain_s $(cat "$WORK/secs.plain")" | awk '{printf "%.2f", $1 + $2}')
    read -r s l <"$WORK/secs.shim"
    g_shim_s=$(echo "$g_shim_s $s" | awk '{printf "%.2f", $1 + $2}')
    g_lists=$((g_lists + l))
done
row "glib tests ($g_tests progs)" "$g_plain_s" "$g_shim_s" "$g_same/$g_tests same" "$g_pass/$g_total ok" "$g_lists" "-"

echo
echo "input: ${SIZE_MB} MB (half text, half random); $(nproc) cores; $(uname -r)"
echo "plain s: without the shim; shim s: under it (no client); output, round trip, lists"
echo "and threads: from a third run under the shim while a client listed it in a loop"
printf '%-26s %8s %8s %-10s %-10s %6s %7s\n' program "plain s" "shim s" output "round trip" lists threads
for r in "${ROWS[@]}"; do echo "$r"; done
[ -z "$g_diff" ] || echo "glib tests whose results differ:$g_diff"
if grep -q killshim "$WORK/stderr.shim" 2>/dev/null; then
    echo "shim messages on stderr:"; grep killshim "$WORK/stderr.shim" | sort | uniq -c
fi
exit $FAIL
