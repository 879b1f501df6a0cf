#!/usr/bin/env bash
# Real programs nobody here wrote, and real projects' own test suites, run
# without the shim and under it, and compared: exit status, output (test by
# test for suites), time; while each runs under the shim, a killshim-inject
# client lists it and dumps its stacks in turn (a failure counts). Every
# difference is named (stderr and the table) and makes the exit status 1;
# so does a program that is missing: nothing is skipped in silence.
#
#   tools/realprogs.sh [--quick | --ci] [--install] [--size MB] [--timeout S] [GROUP...]
#
# Groups (default: all but ends):
#   compress  xz, zstd, pigz, pbzip2, 7z: bytes and round trips
#   sort      sort --parallel=2
#   git       init, commit, threaded repack, fsck, threaded grep, clone
#   ffmpeg    threaded encodes (mpeg4+aac, libx264) and a decode
#   build     make -j2 and ninja -j2 of a C project: objects and program
#   interp    perl, python3, ruby, node and java thread programs
#   stress    stress-ng --pthread/--mutex/--futex/--fork/--signal
#   ns        unshare --user, nsenter -m (single-threaded callers only)
#   glib      GLib's installed thread tests (TAP, test by test)
#   dbus      D-Bus's installed tests (TAP, test by test)
#   sdl       SDL2's thread tests (testatomic, torturethread, testthread)
#   cpython   CPython's thread tests (regrtest, JUnit, test by test)
#   servers   redis, nginx (thread pool), mariadb, haproxy, squid, unbound,
#             named, varnish, memcached, rsyslogd: started, served, listed
#             and dumped while serving, shut down
#   ends      the servers and the interp programs (--serve) under the shim,
#             one worker thread of each ended (auto; cancel and abort on
#             memcached and mariadbd too): alive after, answers, stops
#             cleanly; a refusal with its reason is no harm (a table of
#             its own; tools/realprogs/ends.sh). Not in the default set: it
#             fails where a program's own stop waits for the thread ended
#             (nginx, haproxy, named: docs/robust.md), which is the program's
#             design, not harm the shim did; run it by name
# --quick: smaller inputs and the shorter test lists. --ci: what CI runs
# (.ci/run, a few minutes): --quick with compress sort glib dbus sdl cpython
# stress. --install: apt-get install what the chosen groups need first
# (without it, a missing program is reported MISSING and fails the run; CI's
# packages come from tools/setup.sh). --timeout: seconds one program may run
# (default 300). --keep: keep the runs' files (their directory is named).
# PY_TESTS / PY_QUICK / SERVERS / ENDS in the environment choose CPython's
# tests, the servers and the programs ends ends a thread of. Needs a plain build of the shim and the injector (done
# here with bazel).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REALPROGS_DIR=$PWD/tools/realprogs

SIZE_MB=64 QUICK=0 INSTALL=0 TIMEOUT=300 KEEP=0 SEL=()
ALL="compress sort git ffmpeg build interp stress ns glib dbus sdl cpython servers"
BY_NAME="ends"   # groups run only when named
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE_MB=$2; shift 2 ;;
        --quick) QUICK=1; SIZE_MB=8; shift ;;
        --ci) QUICK=1; SIZE_MB=8; SEL+=(compress sort glib dbus sdl cpython stress); shift ;;
        --install) INSTALL=1; shift ;;
        --keep) KEEP=1; shift ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
        -*) echo "realprogs: unknown option $1" >&2; exit 2 ;;
        *) [[ " $ALL $BY_NAME " == *" $1 "* ]] || { echo "realprogs: unknown group $1 (groups: $ALL $BY_NAME)" >&2; exit 2; }
           SEL+=("$1"); shift ;;
    esac
done
[ ${#SEL[@]} -gt 0 ] || read -r -a SEL <<<"$ALL"

# Debian packages, by group.
declare -A PKGS=(
    [compress]="xz-utils zstd pigz pbzip2 p7zip-full" [sort]="coreutils" [git]="git"
    [ffmpeg]="ffmpeg" [build]="build-essential make ninja-build"
    [interp]="perl python3 ruby nodejs default-jdk-headless" [stress]="stress-ng" [ns]="util-linux"
    [glib]="libglib2.0-tests" [dbus]="dbus-tests" [sdl]="libsdl2-tests"
    [cpython]="python3 libpython3.11-testsuite"
    [ends]="redis-server redis-tools nginx mariadb-server mariadb-client haproxy squid unbound
            bind9 bind9-dnsutils varnish memcached rsyslog curl socat jq perl python3 nodejs
            default-jdk-headless"
    [servers]="redis-server redis-tools nginx mariadb-server mariadb-client haproxy squid unbound
               bind9 bind9-dnsutils varnish memcached rsyslog curl socat"
)
if [ "$INSTALL" -eq 1 ]; then
    need=""
    for g in "${SEL[@]}"; do
        for p in ${PKGS[$g]}; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
        done
    done
    if [ -n "$need" ]; then
        echo "realprogs: installing$need (apt-get)" >&2
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
        # Servers are started by this script, never by their packages.
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null ||
            { echo "realprogs: apt-get install failed" >&2; exit 1; }
    fi
fi

bazel build //shim:libkillshim.so //injector:killshim-inject >/dev/null 2>&1 ||
    { echo "realprogs: bazel build failed" >&2; exit 1; }
BIN=$(bazel info bazel-bin 2>/dev/null)
SHIM=$BIN/shim/libkillshim.so
INJECT=$BIN/injector/killshim-inject
WORK=$(mktemp -d /tmp/killshim-realprogs.XXXXXX)
# At exit, however it comes: this script's jobs still running (a server, the
# origin, a lister) are ended; then the files go, unless --keep.
cleanup() {
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null; done
    if [ "$KEEP" -eq 1 ]; then echo "realprogs: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tools/realprogs/lib.sh
. "$REALPROGS_DIR/lib.sh"
# shellcheck source=tools/realprogs/sweep.sh
. "$REALPROGS_DIR/sweep.sh"
# shellcheck source=tools/realprogs/suites.sh
. "$REALPROGS_DIR/suites.sh"
# shellcheck source=tools/realprogs/servers.sh
. "$REALPROGS_DIR/servers.sh"
# shellcheck source=tools/realprogs/ends.sh
. "$REALPROGS_DIR/ends.sh"

t0=$(now)
for g in "${SEL[@]}"; do
    echo "realprogs: $g" >&2
    "group_$g"
done

echo
echo "$(nproc) cores, $(uname -r); input ${SIZE_MB} MB; $(secs "$t0" "$(now)") s in all"
echo "plain s: without the shim; shim s: under it, listed and dumped meanwhile"
awk -F'\t' '{ printf "%-8s %-9s %-44s %8s %8s  %s\n", $1, $2, $3, $4, $5, $6 }' \
    <(printf 'status\tgroup\tprogram\tplain s\tshim s\tdetail\n'; cat "$RESULTS")
ndiff=$(grep -cvE '^(same|INFO)	' "$RESULTS" || true)
nsame=$(grep -c '^same	' "$RESULTS" || true)
if [ "$nsame" -eq 0 ] && [ "$ndiff" -eq 0 ]; then
    echo "realprogs: nothing was run" >&2
    exit 1
fi
if [ "$ndiff" -gt 0 ]; then
    echo
    echo "differences:"
    grep -vE '^(same|INFO)	' "$RESULTS" | awk -F'\t' '{ printf "  %s %s/%s: %s\n", $1, $2, $3, $6 }'
fi
echo "realprogs: $nsame passed, $ndiff failed"
[ "$ndiff" -eq 0 ]
