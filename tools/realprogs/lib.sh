# shellcheck shell=bash
# What tools/realprogs.sh and its parts share: running a program without the
# shim and under it, each under a deadline, with a client that lists and
# dumps it while it runs under the shim; and recording every difference by
# name. Sourced; needs SHIM, INJECT, WORK and TIMEOUT set.

RESULTS=$WORK/results.tsv   # STATUS GROUP NAME PLAIN_S SHIM_S DETAIL, tab-separated
: >"$RESULTS"

now() { date +%s.%N; }
# CPU seconds (user + system) of this shell's children that were waited for:
# a run's CPU time is the difference across its wait (its own children too).
# `times` runs in this shell (a pipe or $(...) would ask a subshell, whose
# children are none), into a file read after.
child_cpu() {
    times >"$WORK/times"
    awk 'NR == 2 { n = split($0, f, " "); t = 0
        for (i = 1; i <= n; i++) { split(f[i], ms, "m"); t += ms[1] * 60 + ms[2] }
        printf "%.2f", t }' "$WORK/times"
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# record STATUS GROUP NAME PLAIN_S SHIM_S DETAIL: one line of the table.
# STATUS: same (no difference), DIFF (a difference: named in DETAIL), MISSING
# (the program or its package is not there), INFO (a figure, no comparison).
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
    [ "$1" = same ] || [ "$1" = INFO ] || echo "realprogs: $1 $2/$3: $6" >&2
}

# need_bin GROUP NAME PATH...: every PATH is an executable; else records
# MISSING for GROUP/NAME and fails.
need_bin() {
    local group=$1 name=$2 p
    shift 2
    for p in "$@"; do
        if ! command -v "$p" >/dev/null 2>&1; then
            record MISSING "$group" "$name" - - "$p not found (tools/realprogs.sh --install)"
            return 1
        fi
    done
}

# watchdog PID SECS MARK: ends PID if it runs longer than SECS (SIGTERM,
# then SIGKILL 5 s later) and creates the file MARK; returns soon after PID
# ends by itself (it looks every 0.1 s), so it leaves nothing behind.
watchdog() {
    local pid=$1 s=$2 mark=$3 i
    for ((i = 0; i < s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    : >"$mark"
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
}

# alive_for PID SECS: PID is still there, and not a zombie, SECS seconds
# on. A listing that fails because the process is on its way out (its exit
# closes the shim's socket) is no failure: its end comes within that time.
alive_for() {
    local i state
    for ((i = 0; i <= $2 * 10; i++)); do
        state=$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)
        [ -n "$state" ] && [ "$state" != Z ] || return 1
        [ "$i" -eq $(($2 * 10)) ] || sleep 0.1
    done
}

# secure_mode PID: the kernel ran PID in secure-execution mode (AT_SECURE:
# setuid, setgid or file capabilities), where the loader ignores
# LD_PRELOAD: it cannot run the shim, by design (docs/robust.md).
secure_mode() {
    od -An -t u8 -v "/proc/$1/auxv" 2>/dev/null |
        awk '{ for (i = 1; i <= NF; i++) a[n++] = $i } END { for (i = 0; i + 1 < n; i += 2) if (a[i] == 23) exit !(a[i + 1] == 1); exit 1 }'
}

# The pids to list: PID and its children (workers, helpers, a build's
# compilers, git's pack-objects).
tree_pids() { echo "$1"; pgrep -P "$1" 2>/dev/null; }

# ask PID N: the N-th request of a lister to PID, in turn a listing
# (killshim-inject --json --all) and a stack dump (--stack --json). Sets
# ASK_RC and ASK_OUT.
ask() {
    if [ $(($2 % 2)) -eq 0 ]; then
        ASK_OUT=$("$INJECT" --stack --json "$1" 2>&1) && ASK_RC=0 || ASK_RC=$?
    else
        ASK_OUT=$("$INJECT" --json --all "$1" 2>&1) && ASK_RC=0 || ASK_RC=$?
    fi
}

# lister PID OUT: while PID lives, lists and dumps it and its children, in
# turn, every 0.1 s. Writes "OK FAIL APP" to OUT: answers that came, answers
# that failed while the process was still there (the first failure's message
# in OUT.why), and the most program threads ("app") one listing saw. Not a
# failure: a process not serving yet (the shim starts with it: PID before
# its first answer, a child asked again 0.2 s later, as one that was in the
# middle of an exec), one on its way out (alive_for), one in secure-execution
# mode (named in OUT.secure: the loader ignores LD_PRELOAD there).
lister() {
    local pid=$1 out=$2 ok=0 fail=0 early=0 app=0 n i=0 p
    : >"$out.why"
    : >"$out.secure"
    while kill -0 "$pid" 2>/dev/null; do
        for p in $(tree_pids "$pid"); do
            i=$((i + 1))
            ask "$p" "$i"
            if [ "$ASK_RC" -ne 0 ] && [ "$p" != "$pid" ] && alive_for "$p" 0; then
                sleep 0.2
                ask "$p" "$i"
            fi
            if [ "$ASK_RC" -eq 0 ]; then
                ok=$((ok + 1))
                n=$(grep -o '"role": *"app"' <<<"$ASK_OUT" | wc -l)
                [ "$n" -gt "$app" ] && app=$n
            elif [ "$ASK_RC" -eq 5 ] && secure_mode "$p"; then
                grep -qx "$(cat "/proc/$p/comm" 2>/dev/null)" "$out.secure" ||
                    cat "/proc/$p/comm" >>"$out.secure" 2>/dev/null
            elif [ ! -e "$WORK/stopping" ] && alive_for "$p" 1; then
                if [ "$p" = "$pid" ] && [ "$ok" -eq 0 ]; then early=$((early + 1)); else fail=$((fail + 1)); fi
                [ -s "$out.why" ] || echo "pid $p ($(cat "/proc/$p/comm" 2>/dev/null)), exit $ASK_RC: $(head -c 300 <<<"$ASK_OUT")" >"$out.why"
            fi
        done
        sleep 0.1
    done
    [ "$ok" -gt 0 ] || fail=$((fail + early))
    echo "$ok $fail $app" >"$out"
}

# run_one MODE TAG CMD...: runs CMD to its end (or its deadline), without
# the shim (MODE plain) or under it (shim, with a lister beside it). stdin
# from $RUN_IN (default /dev/null), stdout to $WORK/TAG.MODE.out, stderr to
# .err, in the current directory. Sets RC (128+N for a signal; 124 if the
# deadline ended it), SECS (wall clock), CPU (its user + system time), and
# for shim LISTS ("ok fail app").
run_one() {
    local mode=$1 tag=$2
    shift 2
    local in=${RUN_IN:-/dev/null} t0 pid dog lp=
    t0=$(now)
    child_cpu >"$WORK/cpu0"
    # A background job of a script ignores SIGINT and SIGQUIT (bash, POSIX);
    # env gives the program their default actions back, as a terminal would
    # (CPython's interrupt_main tests fail otherwise, with or without the
    # shim), then execs it: $! is the program itself.
    if [ "$mode" = shim ]; then
        LD_PRELOAD=$SHIM env --default-signal=INT,QUIT "$@" <"$in" >"$WORK/$tag.$mode.out" 2>"$WORK/$tag.$mode.err" &
    else
        env --default-signal=INT,QUIT "$@" <"$in" >"$WORK/$tag.$mode.out" 2>"$WORK/$tag.$mode.err" &
    fi
    pid=$!
    rm -f "$WORK/$tag.timedout"
    watchdog "$pid" "${RUN_TIMEOUT:-$TIMEOUT}" "$WORK/$tag.timedout" &
    dog=$!
    if [ "$mode" = shim ] && [ -z "${NO_LISTER:-}" ]; then
        lister "$pid" "$WORK/$tag.lists" &
        lp=$!
    fi
    RC=0
    wait "$pid" || RC=$?
    SECS=$(secs "$t0" "$(now)")
    child_cpu >"$WORK/cpu1"
    CPU=$(secs "$(cat "$WORK/cpu0")" "$(cat "$WORK/cpu1")")
    wait "$dog" 2>/dev/null
    [ ! -e "$WORK/$tag.timedout" ] || RC=124
    LISTS="- - -"
    if [ -n "$lp" ]; then
        wait "$lp" 2>/dev/null
        LISTS=$(cat "$WORK/$tag.lists")
    fi
    return 0
}

# The differences between a plain and a shim run, as a phrase ("" if none):
# exit status, the listings' failures, CPU time above SLOW_X times plus
# SLOW_S seconds. CPU, not wall-clock time: this machine is shared, and its
# wall clock varies 3x from one run to the next under others' load (the CPU
# time of a run stays within a few per cent).
SLOW_X=${SLOW_X:-1.5}
SLOW_S=${SLOW_S:-1}
run_diffs() {
    local tag=$1 prc=$2 pcpu=$3 src=$4 scpu=$5 lists=$6 d=""
    [ "$prc" = "$src" ] || d="$d exit $prc without the shim, $src under it;"
    [ "$src" != 124 ] || d="$d timed out under the shim;"
    local ok fail app
    read -r ok fail app <<<"$lists"
    if [ "$ok" != - ]; then
        [ "$fail" -eq 0 ] || d="$d $fail listings/dumps failed ($(cat "$WORK/$tag.lists.why"));"
    fi
    slower "$pcpu" "$scpu" && d="$d ${scpu}s of CPU under the shim against ${pcpu}s;"
    echo "$d"
}

# slower PLAIN_CPU SHIM_CPU: the shim's run took more than SLOW_X times
# plus SLOW_S seconds of CPU.
slower() { awk -v p="$1" -v s="$2" -v x="$SLOW_X" -v a="$SLOW_S" 'BEGIN { exit !(s > p * x + a) }'; }

# recheck_cpu TAG CMD...: a run that looked slower under the shim is run
# twice more each way, alternately, without the lister; the least CPU time
# of each way stands (a time only grows under others' load; in this VM even
# CPU time does, when the host runs other guests). Sets PCPU and SCPU.
recheck_cpu() {
    local tag=$1 m a
    shift
    PCPU=999999 SCPU=999999
    for _ in 1 2; do
        for m in plain shim; do
            local argv=()
            for a in "$@"; do argv+=("${a//@MODE@/$m}"); done
            NO_LISTER=1 run_one "$m" "$tag.recheck" "${argv[@]}"
            if [ "$m" = plain ]; then
                PCPU=$(awk -v a="$PCPU" -v b="$CPU" 'BEGIN { print (b < a ? b : a) }')
            else
                SCPU=$(awk -v a="$SCPU" -v b="$CPU" 'BEGIN { print (b < a ? b : a) }')
            fi
        done
    done
}

# pair GROUP NAME CMD...: runs CMD without the shim, then under it, and
# compares exit status, stdout, time and the listings. "@MODE@" in an
# argument becomes plain or shim (files of each run apart). With FILTER set,
# stdout is compared through `$FILTER MODE TAG` (stdin: that run's stdout).
# Records the row; sets PAIR_TAG (the runs' files are $WORK/PAIR_TAG.MODE.*);
# returns 1 if they differ.
pair() {
    local group=$1 name=$2 m a
    shift 2
    PAIR_TAG=$(printf '%s' "$group.$name" | tr -c 'A-Za-z0-9_.-' '_')
    local tag=$PAIR_TAG prc ps pc
    for m in plain shim; do
        local argv=()
        for a in "$@"; do argv+=("${a//@MODE@/$m}"); done
        run_one "$m" "$tag" "${argv[@]}"
        if [ -n "${FILTER:-}" ]; then
            "$FILTER" "$m" "$tag" <"$WORK/$tag.$m.out" >"$WORK/$tag.$m.cmp"
        else
            cp "$WORK/$tag.$m.out" "$WORK/$tag.$m.cmp"
        fi
        [ "$m" = shim ] || { prc=$RC; ps=$SECS; pc=$CPU; }
    done
    local d rc=$RC cpu=$CPU lists=$LISTS ss=$SECS
    if slower "$pc" "$cpu"; then
        recheck_cpu "$tag" "$@"
        pc=$PCPU cpu=$SCPU
    fi
    d=$(run_diffs "$tag" "$prc" "$pc" "$rc" "$cpu" "$lists")
    if ! cmp -s "$WORK/$tag.plain.cmp" "$WORK/$tag.shim.cmp"; then
        local only_p only_s
        only_p=$(diff "$WORK/$tag.plain.cmp" "$WORK/$tag.shim.cmp" | grep -c '^<')
        only_s=$(diff "$WORK/$tag.plain.cmp" "$WORK/$tag.shim.cmp" | grep -c '^>')
        d="$d output differs ($only_p lines only without the shim, $only_s only under it; first: $(
            diff "$WORK/$tag.plain.cmp" "$WORK/$tag.shim.cmp" | grep -E '^[<>]' | head -2 | tr '\n' ' '));"
    fi
    local ok fail app
    read -r ok fail app <<<"$lists"
    if [ -z "$d" ]; then
        record same "$group" "$name" "$ps" "$ss" "exit $rc; CPU ${pc}s/${cpu}s; $ok listings/dumps, up to $app app threads"
    else
        record DIFF "$group" "$name" "$ps" "$ss" "${d# } (CPU ${pc}s/${cpu}s)"
        return 1
    fi
}
