#!/usr/bin/env bash
# Language runtimes that tools/realprogs.sh does not cover, with and without
# the shim: a cgo program, a pure Go one (static: the shim cannot load, it
# must simply run), a Go c-shared library in a C program, Guile threads
# (Boehm GC), a C program on Boehm's collector with parallel marking, Erlang
# schedulers, Mono threads (SGen GC). Each runs the same workload without and
# under the shim (exit status and output compared); under the shim a client
# lists it and dumps its stacks DUMPS times while it runs, then a second run
# has one worker thread ended with the default mode, which must end it or
# refuse with a reason, and the program must finish its work as without.
#
#   tools/realprogs/runtimes.sh [--install] [--dumps N] [NAME...]
#
# Names: cgo gopure goshared guile boehm erlang mono (default: all). --install:
# apt-get install golang-go guile-3.0 libgc1 erlang-base mono-mcs mono-runtime gcc. Needs a plain
# build (bazel build //shim:libkillshim.so //injector:killshim-inject).
# Prints one row per program; exits 1 if any row differs.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
SRC=$PWD/tools/realprogs/runtimes
SHIM=$PWD/bazel-out/k8-fastbuild/bin/shim/libkillshim.so
INJECT=$PWD/bazel-out/k8-fastbuild/bin/injector/killshim-inject
DUMPS=30 INSTALL=0 SEL=()
while [ $# -gt 0 ]; do
    case "$1" in
        --install) INSTALL=1; shift ;;
        --dumps) DUMPS=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "runtimes: unknown option $1" >&2; exit 2 ;;
        *) SEL+=("$1"); shift ;;
    esac
done
[ ${#SEL[@]} -gt 0 ] || SEL=(cgo gopure goshared guile boehm erlang mono)
if [ $INSTALL = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        golang-go guile-3.0 libgc1 erlang-base mono-mcs mono-runtime gcc libc6-dev >/dev/null || exit 1
fi
for f in "$SHIM" "$INJECT"; do
    [ -x "$f" ] || { echo "runtimes: $f missing: bazel build //shim:libkillshim.so //injector:killshim-inject" >&2; exit 2; }
done
WORK=$(mktemp -d /tmp/killshim-runtimes.XXXXXX)
GOBIN_DIR=$(ls -d /usr/lib/go-*/bin 2>/dev/null | tail -1)
export PATH=$PATH:$GOBIN_DIR GOCACHE=$WORK/gocache GOFLAGS=-mod=mod
FAIL=0

# build NAME: the program's command line in CMD (an array); 1 if it cannot.
build() {
    local d=$WORK/$1
    mkdir -p "$d"
    case $1 in
        cgo) cp "$SRC/cgo.go" "$d/main.go" && printf 'module rt\ngo 1.19\n' >"$d/go.mod" &&
             (cd "$d" && go build -o prog .) && CMD=("$d/prog") ;;
        gopure) sed -e '/^\/\*$/,/^import "C"$/d' -e 's/int(C.cpid())/os.Getpid()/' \
                    -e 's/C.cpid()/os.Getppid()/' "$SRC/cgo.go" >"$d/main.go" &&
                printf 'module rt\ngo 1.19\n' >"$d/go.mod" &&
                (cd "$d" && CGO_ENABLED=0 go build -o prog .) && CMD=("$d/prog") ;;
        goshared) cp "$SRC/goshared.go" "$d/lib.go" && printf 'module gs\ngo 1.19\n' >"$d/go.mod" &&
                  (cd "$d" && go build -buildmode=c-shared -o libgs.so .) &&
                  gcc -O2 -o "$d/prog" "$SRC/goshared_main.c" -L"$d" -l:libgs.so -Wl,-rpath,"$d" &&
                  CMD=("$d/prog") ;;
        guile) cp "$SRC/threads.scm" "$d/" && CMD=(guile --no-auto-compile "$d/threads.scm") ;;
        boehm) gcc -O2 -o "$d/prog" "$SRC/boehm.c" "$(ls /usr/lib/*/libgc.so.1 | head -1)" -pthread &&
               CMD=("$d/prog") ;;
        erlang) cp "$SRC/work.erl" "$d/" && (cd "$d" && erlc work.erl) &&
                CMD=(erl -noshell -pa "$d" +S 4 -run work main) ;;
        mono) mcs -out:"$d/work.exe" "$SRC/work.cs" && CMD=(mono "$d/work.exe") ;;
    esac
}

# A worker thread to end: a running one of the program's, not main.
pick() {
    "$INJECT" "$1" 2>/dev/null | awk -v main="$1" 'NR > 2 && $1 != main && $7 == "app" {
        if ($4 == "R" && !r) r = $1; if (!a) a = $1 } END { print r ? r : a }'
}

run() {
    local name=$1 secs=8 CMD=()
    build "$name" >"$WORK/$name.build" 2>&1 || { echo "$name: BUILD FAILED ($WORK/$name.build)"; FAIL=1; return; }
    "${CMD[@]}" "$secs" >"$WORK/$name.plain" 2>"$WORK/$name.plain.err"
    local rc0=$?
    LD_PRELOAD=$SHIM "${CMD[@]}" "$secs" >"$WORK/$name.shim" 2>"$WORK/$name.shim.err" &
    local p=$! lists=0 dumps=0 i
    sleep 1.5
    for ((i = 0; i < DUMPS; i++)); do
        kill -0 $p 2>/dev/null || break
        "$INJECT" "$p" >/dev/null 2>&1 && lists=$((lists + 1))
        "$INJECT" --stack "$p" >/dev/null 2>&1 && dumps=$((dumps + 1))
        sleep 0.1
    done
    wait $p
    local rc1=$?
    # The pid differs run to run: "pid N" lines are left out.
    local out=same
    cmp -s <(grep -v '^pid ' "$WORK/$name.plain") <(grep -v '^pid ' "$WORK/$name.shim") || out=DIFF
    LD_PRELOAD=$SHIM "${CMD[@]}" "$secs" >"$WORK/$name.end" 2>"$WORK/$name.end.err" &
    p=$!
    sleep 2
    local tid endrc=- how=-
    tid=$(pick $p)
    if [ -n "$tid" ]; then
        "$INJECT" --timeout 4 "$p" "$tid" >"$WORK/$name.endrep" 2>&1
        endrc=$?
        how=$(grep -m1 -E "^thread $tid " "$WORK/$name.endrep" | sed 's/^[^:]*: //' | cut -c1-90)
    fi
    wait $p
    local rc2=$?
    local after=same
    cmp -s <(grep -v '^pid ' "$WORK/$name.plain") <(grep -v '^pid ' "$WORK/$name.end") || after=DIFF
    local ok=ok
    if [ $rc0 != $rc1 ] || [ $out != same ] || [ $rc2 != $rc0 ] || [ $after != same ] ||
       { [ "$name" != gopure ] && { [ $dumps -lt 1 ] || [ $lists -lt 1 ]; }; }; then
        ok=DIFF FAIL=1
    fi
    printf '%-8s %-4s plain rc=%s | shim rc=%s output %s, %d/%d lists, %d/%d dumps | end %s: rc=%s %s | after: rc=%s output %s\n' \
        "$name" $ok $rc0 $rc1 $out $lists $DUMPS $dumps $DUMPS "${tid:--}" $endrc "$how" $rc2 $after
}

for n in "${SEL[@]}"; do run "$n"; done
echo "runtimes: files in $WORK"
exit $FAIL
