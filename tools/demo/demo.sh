#!/usr/bin/env bash
# killshim demo: a service with hung threads, looked into and repaired while
# it keeps serving. `killshim demo` runs it. Every command is printed as you
# would type it, so you can repeat each one by hand on your own service.
#
# Exit status: 0 if every step went as shown, 1 if one did not (the step says
# what it expected), 2 bad arguments.
set -u

KS=${KILLSHIM_LAUNCHER:?run the demo with: killshim demo}
SERVICE=${KILLSHIM_DEMO_SERVICE:?run the demo with: killshim demo}
step_mode=0
case ${1:-} in
"") ;;
--step) step_mode=1 ;;
*) echo "usage: killshim demo [--step]" >&2; exit 2 ;;
esac

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' OFF=$'\e[0m'
else
    BOLD="" DIM="" RED="" OFF=""
fi

if ! command -v curl >/dev/null; then
    echo "killshim demo: the demo talks to its service with curl; install it (apt-get install curl)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/killshim-demo.XXXXXX")
log=$work/service.log
pid=""
log_seen=0
failed=0

stop_service() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap stop_service EXIT
trap 'exit 1' INT TERM

# ---- Presentation --------------------------------------------------------
# Narration: one comment line per argument, after a blank line.
say() {
    local line
    printf '\n'
    for line in "$@"; do printf '%s# %s%s\n' "$DIM" "$line" "$OFF"; done
}
typed() { printf '%s$ %s%s\n' "$BOLD" "$*" "$OFF"; }
pause() { [ "$step_mode" = 1 ] && read -r -p "[Enter]" _ </dev/tty; return 0; }

# What the service printed since last time (its terminal, in real life).
service_output() {
    local lines
    lines=$(wc -l <"$log")
    [ "$lines" -gt "$log_seen" ] && tail -n "+$((log_seen + 1))" "$log" | head -n "$((lines - log_seen))"
    log_seen=$lines
}

# Waits (up to 30 s) for the service to print a line matching $1, then shows
# what it printed. The service logs from its own threads, a moment after the
# injector has seen the thread go.
service_says() {
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q -- "$1" "$log" && break
        sleep 0.1
    done
    service_output
    grep -q -- "$1" "$log" || fail "the service never said '$1'"
}

# The demo checks itself: a step that did not go as shown fails the demo.
fail() { printf '%skillshim demo: %s%s\n' "$RED" "$*" "$OFF" >&2; failed=1; }

# `killshim ARGS...`, shown as typed; prints a non-zero exit status as a
# shell would leave it in $?.
killshim() {
    typed "killshim $*"
    "$KS" "$@"
    local rc=$?
    [ $rc -ne 0 ] && printf '%s(exit status %d)%s\n' "$DIM" $rc "$OFF"
    return $rc
}

# Runs `killshim ARGS...` and checks its exit status is WANT (one of a
# space-separated list).
expect_exit() {
    local want=$1 rc
    shift
    killshim "$@"
    rc=$?
    case " $want " in
    *" $rc "*) return 0 ;;
    esac
    fail "'killshim $*' exited with $rc, expected $want"
    return 1
}

ask_service() {
    typed "curl -s http://127.0.0.1:$port/"
    local reply
    reply=$(curl -s --max-time 10 "http://127.0.0.1:$port/")
    printf '%s\n' "$reply"
    [[ $reply == ok:* ]] || fail "the service did not answer"
}

# The tid of the thread named $1, read from the listing as you would.
tid_of() { "$KS" inject "$pid" 2>/dev/null | awk -v n="$1" '$2 == n { print $1 }'; }

# Waits (up to 30 s) until `killshim inject PID` names the deadlock: the
# service announces itself a moment before the ledgers take their second lock.
wait_for_deadlock() {
    local i
    for ((i = 0; i < 300; i++)); do
        "$KS" inject "$pid" 2>/dev/null | grep -q '^deadlock: ' && return 0
        sleep 0.1
    done
    fail "the ledgers never deadlocked"
    return 1
}

# ---- The steps -------------------------------------------------------------
start_service() {
    say "A service with five hung workers; it knows nothing of killshim." \
        "Start it under the shim (it prints its pid and its address):"
    typed "killshim run -- hung_service &"
    : >"$log"   # before the job opens it: the loop below reads it at once
    "$KS" run -- "$SERVICE" >"$log" 2>&1 &
    pid=$!
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q 'serving http://' "$log" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    service_output
    port=$(sed -n 's|.*serving http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$log")
    if [ -z "$port" ]; then
        fail "the service did not start"
        return 1
    fi
    printf '%s[1] %d%s\n' "$DIM" "$pid" "$OFF"
}

its_threads() {
    say "It still answers; its http thread is healthy:"
    ask_service
    pause
    say "But five workers are stuck. What are its threads doing?"
    wait_for_deadlock || return 1
    local out
    out=$(killshim inject "$pid")
    local rc=$?
    printf '%s\n' "$out"
    [ $rc -eq 0 ] || fail "listing the threads failed"
    local name
    for name in http cruncher fetcher ledger-a ledger-b reporter; do
        grep -q "^[0-9]* *$name " <<<"$out" || fail "the listing does not show $name"
    done
    grep -q '^deadlock: ' <<<"$out" || fail "the listing does not name the deadlock"
    say "cruncher burns CPU (state R), fetcher sits in read, and ledger-a and ledger-b" \
        "each hold a lock the other waits for: a deadlock."
}

their_stacks() {
    say "Their stacks, taken inside the process without stopping it, what each one" \
        "is blocked on, and the deadlock cycle (jstack for native programs):"
    local out rc
    out=$(killshim inject --stack "$pid")
    rc=$?
    printf '%s\n' "$out"
    [ $rc -eq 0 ] || fail "--stack failed"
    grep -q 'cruncher_main' <<<"$out" || fail "--stack does not show cruncher_main"
    grep -q 'blocked in read(' <<<"$out" || fail "--stack does not show the fetcher's read"
    grep -q '^deadlock: ' <<<"$out" || fail "--stack does not name the deadlock"
}

end_fetcher() {
    local tid
    tid=$(tid_of fetcher)
    say "fetcher ($tid) waits in read() for an upstream that accepted it and never answers." \
        "read() is a cancellation point, so cancel it; its cleanup handler closes the socket:"
    expect_exit 0 inject --mode cancel "$pid" "$tid"
    service_says "joined fetcher: it ended by cancellation"
}

end_cruncher() {
    local tid
    tid=$(tid_of cruncher)
    say "cruncher ($tid) spins in a loop that calls nothing: no cancellation point will come." \
        "abort makes it leave at a safe point, as a cancellation would:"
    expect_exit 0 inject --mode abort "$pid" "$tid"
    service_says "joined cruncher"
}

end_reporter() {
    local tid
    tid=$(tid_of reporter)
    say "reporter ($tid) turned cancellation off. A cancel would wait in vain; killshim says so:"
    expect_exit 3 inject --mode cancel --timeout 2 "$pid" "$tid"
    say "It checks its own variable, stop_reporting, between reports. Flag mode sets it:"
    expect_exit 0 inject --mode flag --flag-symbol stop_reporting "$pid" "$tid"
    service_says "joined reporter: it returned"
}

end_deadlock() {
    local a b
    a=$(tid_of ledger-a)
    b=$(tid_of ledger-b)
    say "ledger-a ($a) holds account_a and waits for account_b; ledger-b ($b) the reverse." \
        "An abort never leaves a mutex locked, so it waits for an unlock that cannot come," \
        "and says so:"
    expect_exit 3 inject --mode abort --timeout 2 "$pid" "$a"
    say "One side has to go. --force ends ledger-a now, where it is; its cleanup handler" \
        "unlocks account_a, so ledger-b gets both accounts and goes on:"
    expect_exit 0 inject --mode abort --force "$pid" "$a"
    service_says "joined ledger-a"
    service_says "ledger-b: got both accounts; transfers resume"
}

still_serving() {
    say "The service never restarted: same pid, still answering, and its ledger works again."
    killshim inject "$pid" || fail "the final listing failed"
    ask_service
    service_output
}

start_service || exit 1
pause
its_threads
pause
their_stacks
pause
end_fetcher
pause
end_cruncher
pause
end_reporter
pause
end_deadlock
pause
still_serving
say "Done. The commands above work the same on your own service: 'killshim run -- ./yours'."
exit $failed
