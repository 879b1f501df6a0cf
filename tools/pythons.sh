#!/bin/sh
# Fetches CPython 3.9 (Debian 11, bullseye) and 3.13 (Debian 13, trixie) from
# deb.debian.org for the shim's Python tests (docs/python.md), without
# touching the machine's apt sources or installing anything system-wide: a
# private apt configuration under the cache downloads the .debs and
# `dpkg-deb -x` unpacks them beside each other.
#
#   tools/pythons.sh [DIR]     DIR: $KS_PYTHONS, else /var/cache/killshim/pythons
#
# Leaves DIR/3.9 and DIR/3.13, each a root of unpacked packages (usr/bin/
# python3.X, usr/lib/python3.X, usr/include/python3.X), and DIR/3.X/run: a
# wrapper that runs that interpreter with its own stdlib (and, for 3.13,
# trixie's own loader and libc: its python3.13 needs GLIBC_2.38, Debian 12
# has 2.36). tests/e2e/python*_test and tests/unit/pyframes_layout_test find
# them there (the same default, or KS_PYTHONS). Safe to run again: a version
# already unpacked (DIR/3.X/ok) is skipped, so a second run takes no time.
set -eu

DIR=${1:-${KS_PYTHONS:-/var/cache/killshim/pythons}}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR=http://deb.debian.org/debian

# suite minor packages...
fetch() {
    suite=$1 minor=$2
    shift 2
    root="$DIR/$minor"
    [ -f "$root/ok" ] && return 0
    apt_dir="$DIR/apt-$suite"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
    : >"$apt_dir/status"
    echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >"$apt_dir/sources.list"
    set -- -o Dir::Etc::SourceList="$apt_dir/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null \
        -o Dir::Etc::PreferencesParts=/dev/null \
        -o Dir::State="$apt_dir" -o Dir::State::Lists="$apt_dir/lists" \
        -o Dir::State::status="$apt_dir/status" -o Dir::Cache="$apt_dir" \
        -o APT::Architecture=amd64 -o APT::Architectures=amd64 \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
    echo "killshim pythons: fetching CPython $minor from Debian $suite into $root" >&2
    apt-get -qq "$@" update
    pkgs=$(cat "$apt_dir/want")
    # shellcheck disable=SC2086
    (cd "$apt_dir/debs" && apt-get -qq "$@" download $pkgs)
    rm -rf "$root"
    mkdir -p "$root"
    for deb in "$apt_dir"/debs/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
}

mkdir -p "$DIR"

# 3.9: built against glibc 2.31, runs on Debian 12's libc as it is; its
# ctypes needs Debian 11's libffi.so.7, beside it (LD_LIBRARY_PATH).
if [ ! -f "$DIR/3.9/ok" ]; then
    mkdir -p "$DIR/apt-bullseye"
    echo "python3.9-minimal libpython3.9-minimal libpython3.9-stdlib libpython3.9-dev
          libpython3.9 python3.9-dev python3.9 libffi7" >"$DIR/apt-bullseye/want"
    fetch bullseye 3.9 -o Acquire::Languages=none
    cat >"$DIR/3.9/run" <<EOF
#!/bin/sh
# CPython 3.9 from Debian 11, unpacked by tools/pythons.sh.
export PYTHONHOME="$DIR/3.9/usr" LD_LIBRARY_PATH="$DIR/3.9/usr/lib/x86_64-linux-gnu"
exec "$DIR/3.9/usr/bin/python3.9" "\$@"
EOF
    chmod +x "$DIR/3.9/run"
    "$DIR/3.9/run" -c 'import sys, threading, socket, queue, hashlib, re, ctypes; assert sys.version_info[:2] == (3, 9)'
    : >"$DIR/3.9/ok"
fi

# 3.13: needs GLIBC_2.38; runs with trixie's own loader and libc (and the
# libraries its modules link), unpacked beside it. The shim is preloaded into
# it as into any program: it links no symbol newer than Debian 12's libc.
if [ ! -f "$DIR/3.13/ok" ]; then
    mkdir -p "$DIR/apt-trixie"
    echo "python3.13-minimal libpython3.13-minimal libpython3.13-stdlib libpython3.13-dev
          libpython3.13 python3.13-dev python3.13 libc6 libexpat1 zlib1g libffi8 libssl3t64
          libbz2-1.0 liblzma5 libzstd1 libmpdec4 libsqlite3-0 libuuid1 libgcc-s1" \
        >"$DIR/apt-trixie/want"
    fetch trixie 3.13 -o Acquire::Languages=none
    lib="$DIR/3.13/usr/lib/x86_64-linux-gnu"
    cat >"$DIR/3.13/run" <<EOF
#!/bin/sh
# CPython 3.13 from Debian 13, unpacked by tools/pythons.sh, run by trixie's
# own loader and libc (LD_PRELOAD passes through the loader as usual).
PYTHONHOME="$DIR/3.13/usr" exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" \
    "$DIR/3.13/usr/bin/python3.13" "\$@"
EOF
    chmod +x "$DIR/3.13/run"
    "$DIR/3.13/run" -c 'import sys, threading, socket, queue, hashlib, re, ctypes; assert sys.version_info[:2] == (3, 13)'
    : >"$DIR/3.13/ok"
fi
