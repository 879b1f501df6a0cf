# shellcheck shell=bash
# The ends group: does ending one thread of a real program do it no harm?
# Each server of servers.sh (and the perl, python3, node and java thread
# programs in --serve mode) is started under the shim; a worker thread (never
# the main one) is picked from killshim-inject's listing of the process that
# owns the workers (nginx's and varnish's child) and ended: `killshim-inject
# --json -t 10 PID TID` (auto), and -m abort / -m cancel on memcached (C) and
# mariadbd (C++). Recorded: the injector's exit and result (gone how, refused
# and why, pending). Then, whatever the result: the process is still there,
# the other threads it had are still there, the server answers its own client
# (4 tries, each bounded: "answers" counts them; none is a hang), and its
# normal stop ends it within 60 s with the exit status it has without an
# end (0; not a signal, no "terminate called"). A refusal with its reason is
# no harm; a crash, a server that answers no more, a stop that does not come
# or fails, exit 0 with a lock left held (a waiter on the ended thread's
# mutex after) is harm, named in the table. Sourced by tools/realprogs.sh,
# after servers.sh.

# A worker thread to end, by program: the first app thread (not the main)
# whose name (or Python name) matches, else the first app thread.
declare -A END_PICK=([redis]='^io_thd' [memcached]='^mc-worker$' [named]='^isc-(net|worker)'
    [varnish]='^cache-worker' [rsyslog]='^rs:main' [unbound]='.' [mariadb]='.' [squid]='.'
    [nginx]='.' [haproxy]='.' [python]='^worker' [java]='^worker' [node]='.' [perl]='.')

# The interpreters' programs, as servers: a beat on stdout every 0.1 s is
# their answer; the stop file is their normal stop (exit 0).
srv_python_start() { exec /usr/bin/python3 "$REALPROGS_DIR/threads.py" --serve "$1/stop"; }
srv_perl_start() { exec perl "$REALPROGS_DIR/threads.pl" --serve "$1/stop"; }
srv_node_start() { exec node "$REALPROGS_DIR/threads.js" --serve "$1/stop"; }
srv_java_start() { exec java "$REALPROGS_DIR/Threads.java" --serve "$1/stop"; }
beats() { grep -c '^beat$' "$1/stdout" 2>/dev/null || echo 0; }
# More beats come within 3 s.
beat_ready() {
    local n0 i
    n0=$(beats "$1")
    for ((i = 0; i < 30; i++)); do
        [ "$(beats "$1")" -gt "$n0" ] && return 0
        sleep 0.1
    done
    return 1
}
for _i in python perl node java; do
    eval "srv_${_i}_ready() { beat_ready \"\$1\"; }; srv_${_i}_stop() { : >\"\$1/stop\"; }"
done
unset _i

# bounded SECS FUNC ARGS...: the shell function FUNC, in a shell of its own
# killed (its process group) after SECS: a client that hangs on a server that
# hangs is a failure, not this script's hang.
bounded() {
    local s=$1
    shift
    # shellcheck disable=SC2016 # $0 and $@ are the inner shell's.
    timeout -k 2 "$s" bash -c '. "$0"; "$@"' "$WORK/ends.funcs" "$@" >/dev/null 2>&1
}

# pick_thread PID NAME: from the listings of PID and its children, the
# process that runs app threads and the worker to end. Sets TPID, TTID,
# TNAME, TSTART (its start routine), OTHERS (the other app threads' tids);
# fails if there is none.
pick_thread() {
    local pid=$1 pat=${END_PICK[$2]} p rows
    TPID="" TTID="" TNAME="" TSTART="" OTHERS=""
    for p in $(tree_pids "$pid"); do
        rows=$("$INJECT" --json "$p" 2>/dev/null |
            jq -r '.threads[] | select(.role == "app") | "\(.tid)\t\(.python_name // .name)\t\(.start // "-")"') || continue
        [ -n "$rows" ] || continue
        TPID=$p
        IFS=$'\t' read -r TTID TNAME TSTART < <(awk -F'\t' -v p="$pat" '$2 ~ p { print; exit }' <<<"$rows")
        [ -n "$TTID" ] || IFS=$'\t' read -r TTID TNAME TSTART <<<"$(head -1 <<<"$rows")"
        OTHERS=$(awk -F'\t' -v t="$TTID" '$1 != t { print $1 }' <<<"$rows" | tr '\n' ' ')
        return 0
    done
    return 1
}

# end_summary FILE: the injector's JSON answer in a phrase.
end_summary() {
    jq -r 'if .result == "gone" then "gone: \(.how // "exited") by \(.mode // "-")" +
             (if (.locks_left // 0) > 0 then ", \(.locks_left) lock(s) left" else "" end)
           elif .result == "refused" then "refused: \([.steps[] | select(.accepted | not) | .message] | last // .pending)"
           else "pending: \(.pending)" end' "$1" 2>/dev/null | tr '\n\t' '  ' | sed 's/[ ;]*$//' | cut -c1-300
}

# end_one NAME MODE: starts NAME under the shim, ends a worker with MODE
# (auto: no -m), checks it did no harm, stops it; one row of the table.
end_one() {
    local name=$1 mode=$2 dir pid rc=0 d="" res alive others=0 nothere=0 t ans=0 i stop
    local tag=$name.$mode
    END_FAILED=0
    dir=$WORK/end.$tag
    rm -rf "$dir"
    mkdir -p "$dir"
    next_port
    LD_PRELOAD=$SHIM "srv_${name}_start" "$dir" "$PORT" >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    # Ready within 90 s of wall clock (each try bounded: one may hang).
    local until=$((SECONDS + 90)) up=no
    while [ "$SECONDS" -lt "$until" ] && ! gone "$pid"; do
        bounded 10 "srv_${name}_ready" "$dir" "$PORT" && { up=yes; break; }
        sleep 0.1
    done
    if [ "$up" = no ] || gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        record DIFF ends "$name $mode" - - "did not start under the shim ($(tail -c 200 "$dir/stderr" | tr '\n' ' '))"
        return
    fi
    if [ "$mode" = none ]; then
        TNAME="(none ended)" TTID="" TSTART="" res="control: nothing ended" alive=yes
    elif ! pick_thread "$pid" "$name"; then
        d="no app thread listed;"
    else
        local m=()
        [ "$mode" = auto ] || m=(-m "$mode")
        "$INJECT" --json -t 10 "${m[@]}" "$TPID" "$TTID" >"$dir/end.json" 2>"$dir/end.err" || rc=$?
        res=$(end_summary "$dir/end.json")
        [ -n "$res" ] || res="no answer: $(head -c 160 "$dir/end.err" | tr '\n' ' ')"
        # A lock the injector did not report: a thread waits on a mutex the
        # ended thread owned.
        if [ "$rc" -eq 0 ] && "$INJECT" --json "$TPID" 2>/dev/null |
            jq -e --argjson t "$TTID" '[.threads[] | select(.waiting_for_owner == $t)] | length > 0' >/dev/null; then
            d="$d exit 0 but a thread waits on a lock thread $TTID held;"
        fi
        alive=no
        alive_for "$TPID" 1 && alive_for "$pid" 0 && alive=yes
        [ "$alive" = yes ] || d="$d the process is gone after the end;"
        for t in $OTHERS; do
            others=$((others + 1))
            [ -d "/proc/$TPID/task/$t" ] || nothere=$((nothere + 1))
        done
        [ "$nothere" -eq 0 ] || d="$d $nothere of the $others other threads are gone;"
    fi
    for ((i = 0; i < 4; i++)); do
        bounded 10 "srv_${name}_ready" "$dir" "$PORT" && ans=$((ans + 1))
    done
    [ "$ans" -gt 0 ] || d="$d answers its client no more;"
    "srv_${name}_stop" "$dir" "$PORT" "$pid" >/dev/null 2>&1
    stop=0
    if ! wait_until 60 gone "$pid"; then
        # What it waits on, for the report: every process's stacks.
        # Its children go too (nginx's worker would spin on, orphaned).
        local kids
        kids=$(pgrep -P "$pid")
        for t in $(tree_pids "$pid"); do "$INJECT" --stack "$t" 2>&1; done >"$dir/stuck.stack"
        # shellcheck disable=SC2086
        kill -KILL "$pid" $kids 2>/dev/null
        stop="did not stop in 60 s"
    fi
    local src=0
    { wait "$pid" || src=$?; } 2>/dev/null
    [ "$stop" = 0 ] && stop="exit $src"
    [ "$src" -eq 0 ] || d="$d stop: $stop;"
    if [ "$src" -gt 128 ] && [ "$src" -lt 160 ]; then d="$d killed by signal $((src - 128));"; fi
    grep -q 'terminate called' "$dir/stderr" && d="$d terminate called;"
    [ -z "$TTID" ] || [ "$TPID" = "$pid" ] || TNAME="$TNAME (child $TPID)"
    local short=${res:--}
    [ ${#short} -le 80 ] || short="${short:0:77}..."
    local row="$TNAME $TTID|$mode|exit $rc; $short|${alive:-no}, others $((others - nothere))/$others|$ans/4|$stop"
    printf '%s|%s\n' "$name" "$row" >>"$WORK/ends.table"
    if [ -z "$d" ]; then
        record same ends "$name $mode" - - "$TNAME ($TTID, ${TSTART:--}): exit $rc; $res; answers $ans/4; $stop"
    else
        record DIFF ends "$name $mode" - - "$TNAME ($TTID, ${TSTART:--}): exit $rc; $res;${d%;}"
        END_FAILED=1
    fi
}

ENDS=${ENDS:-"redis nginx memcached haproxy squid varnish unbound named mariadb rsyslog python perl node java"}

group_ends() {
    local s
    declare -A need=([python]=/usr/bin/python3 [perl]=perl [node]=node [java]=java)
    chmod 755 "$WORK"
    need_bin ends jq jq || return
    : >"$WORK/ends.table"
    origin_start || record DIFF ends origin - - "the python3 origin server did not start"
    export ORIGIN_PORT QUICK REALPROGS_DIR WORK
    declare -f >"$WORK/ends.funcs"
    for s in $ENDS; do
        # shellcheck disable=SC2086
        need_bin ends "$s" ${SRV_NEED[$s]:-${need[$s]}} || continue
        [ "$s" != mariadb ] || mariadb_template ends || continue
        end_one "$s" auto
        # Harm: the same program, nothing ended, as a control in this run.
        [ "$END_FAILED" -eq 0 ] || end_one "$s" none
        if [ "$s" = memcached ] || [ "$s" = mariadb ]; then
            end_one "$s" cancel
            end_one "$s" abort
        fi
    done
    origin_stop
    echo
    echo "ends: one worker thread ended, then: alive, answers (of 4 tries), its normal stop"
    awk -F'|' '{ printf "%-10s %-32s %-7s %-88s %-16s %-7s %s\n", $1, $2, $3, $4, $5, $6, $7 }' \
        <(echo "program|thread|mode|injector exit; result|alive, others|answers|stop"; cat "$WORK/ends.table")
}
