#!/bin/sh
# Installs everything killshim needs to build and test on a bare Debian 12.
# Safe to run again: it installs only what is missing. Needs root (or sudo).
set -eu

# xz-utils: tests/e2e/realprog_test runs xz under the shim.
# clang-14, libclang-rt-14-dev: tools/fuzz.sh (libFuzzer), run by CI.
# python3, openjdk-17-jre-headless: tests/e2e/safe_end_test checks that a
# language runtime's threads (Debian's python3, a Java VM: rmiregistry) are
# refused; a fresh Debian 12 has neither.
# libjemalloc2, libtcmalloc-minimal4, libmimalloc2.0: tests/e2e/alloc_test
#   preloads each allocator before and after the shim.
# redis-server, redis-tools: tests/e2e/redis_test (redis-server links
#   jemalloc; redis-benchmark loads it) and tools/bench/redis.sh.
# python3.11-dev: tests/unit/pyframes_layout_test checks the shim's table of
#   CPython 3.11's private offsets (shim/control/pyframes_layout.c) against
#   these headers.
# zstd ... libpython3.11-testsuite: what CI's `tools/realprogs.sh --ci` runs
#   with and without the shim (compressors, stress-ng, and the test suites of
#   GLib, D-Bus, SDL2 and CPython). The full sweep's other programs (servers,
#   ffmpeg, git...) come with `tools/realprogs.sh --install`.
# libdeflate-dev: the injector inflates the compressed DWARF sections a
#   line lookup reads itself (injector/dwsec.c), twice as fast as zlib.
# libc6-dbg: tests/unit/dwline_test checks that reader against libdw on
#   libc's debug file (compressed DWARF 5, the case it exists for).
# gnuplot-nox: tools/bench/run.sh draws docs/bench-scale.svg (benchmarks only).
PKGS="build-essential bazel-bootstrap libunwind-dev libgtest-dev libdw-dev libelf-dev
      libjson-c-dev util-linux procps man-db groff-base curl xz-utils clang-14
      libclang-rt-14-dev python3 openjdk-17-jre-headless libjemalloc2
      libtcmalloc-minimal4 libmimalloc2.0 redis-server redis-tools
      zstd pigz pbzip2 p7zip-full stress-ng libglib2.0-tests dbus-tests libsdl2-tests
      libpython3.11-testsuite python3.11-dev
      libdeflate-dev libc6-dbg gnuplot-nox libexpat1 zlib1g"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
    echo "killshim setup: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# CPython 3.9 and 3.13 from Debian 11's and 13's packages, unpacked under
# /var/cache/killshim/pythons (apt's sources untouched, nothing installed):
# the python*_test_39/_313 variants and pyframes_layout_test (tools/pythons.sh).
# After the packages above: Debian 11's python3.9 runs on this system's
# libexpat1 and zlib1g.
$SUDO "$(dirname "$0")/pythons.sh"
