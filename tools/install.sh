#!/bin/sh
# Installs killshim: `bazel run //:install -- --prefix=/usr/local`.
#
#   PREFIX/bin/killshim, PREFIX/bin/killshim-inject
#   PREFIX/lib/killshim/libkillshim.so     (plus the demo: hung_service, demo.sh)
#   PREFIX/include/killshim.h              (the public header)
#   PREFIX/share/man/man1/killshim.1, killshim-inject.1, man7/libkillshim.7
#   PREFIX/share/doc/killshim/examples/hung_service.c
#
# Nothing refers to PREFIX by name (the launcher finds its files relative to
# itself), so the tree can be staged with --destdir and moved.
set -eu

me=killshim-install
usage() {
    cat <<'EOF'
Usage: bazel run //:install -- [--prefix=DIR] [--destdir=DIR] [--uninstall]
       tools/install.sh [OPTIONS]          (in a checkout, after 'bazel build //...')

  --prefix=DIR    where it goes (default /usr/local)
  --destdir=DIR   stage under DIR (DIR/PREFIX/...), as packagers do; also $DESTDIR
  --uninstall     remove what an install to the same place put there
  -h, --help      this help

Exit codes: 0 done, 1 a file is missing or cannot be written, 2 bad command line.
EOF
}

prefix=/usr/local
destdir=${DESTDIR:-}
uninstall=0
for a in "$@"; do
    case $a in
    --prefix=?*) prefix=${a#--prefix=} ;;
    --destdir=*) destdir=${a#--destdir=} ;;
    --uninstall) uninstall=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$me: unknown argument '$a'" >&2; usage >&2; exit 2 ;;
    esac
done

# Under `bazel run` the working directory is the runfiles tree; relative
# paths mean what they meant where the user typed them.
absolute() {
    case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "${BUILD_WORKING_DIRECTORY:-$PWD}" "$1" ;;
    esac
}
prefix=$(absolute "$prefix")
[ -n "$destdir" ] && destdir=$(absolute "$destdir")
root=$destdir$prefix

# Sources (scripts, man pages) and build outputs: one runfiles tree under
# `bazel run` and in tests, or a checkout and its bazel-bin.
here=$(dirname -- "$0")
src="" out=""
for t in "$0.runfiles/killshim" "${RUNFILES_DIR:+$RUNFILES_DIR/killshim}" "$here/.."; do
    if [ -n "$t" ] && [ -f "$t/shim/libkillshim.so" ]; then
        src=$t out=$t
        break
    fi
done
if [ -z "$src" ] && [ -f "$here/../bazel-bin/shim/libkillshim.so" ]; then
    src=$here/.. out=$here/../bazel-bin
fi
if [ -z "$src" ]; then
    echo "$me: cannot find the built files; run 'bazel run //:install' (or 'bazel build //...' first)" >&2
    exit 1
fi

# MODE FROM TO: the install list, one line per file (FROM relative to the
# tree it comes from: out/ for build outputs, src/ for sources).
manifest() {
    cat <<EOF
0755 out/injector/killshim-inject bin/killshim-inject
0755 src/tools/killshim bin/killshim
0644 out/shim/libkillshim.so lib/killshim/libkillshim.so
0755 out/tools/demo/hung_service lib/killshim/hung_service
0644 src/tools/demo/demo.sh lib/killshim/demo.sh
0644 src/man/killshim.1 share/man/man1/killshim.1
0644 src/man/killshim-inject.1 share/man/man1/killshim-inject.1
0644 src/man/libkillshim.7 share/man/man7/libkillshim.7
0644 src/tools/demo/hung_service.c share/doc/killshim/examples/hung_service.c
0644 src/shim/killshim.h include/killshim.h
EOF
}

if [ "$uninstall" = 1 ]; then
    manifest | while read -r mode from to; do
        [ -e "$root/$to" ] || continue
        rm -f -- "$root/$to"
        echo "removed $root/$to"
    done
    for d in lib/killshim share/doc/killshim/examples share/doc/killshim; do
        rmdir -- "$root/$d" 2>/dev/null || true
    done
    exit 0
fi

manifest | while read -r mode from to; do
    case $from in
    out/*) f=$out/${from#out/} ;;
    *) f=$src/${from#src/} ;;
    esac
    if [ ! -f "$f" ]; then
        echo "$me: missing $f; rebuild with 'bazel build //...'" >&2
        exit 1
    fi
    # Write to a temporary name and rename: a running program that has the
    # old libkillshim.so mapped keeps it intact.
    mkdir -p -- "$(dirname -- "$root/$to")"
    install -m "$mode" -- "$f" "$root/$to.new.$$"
    mv -f -- "$root/$to.new.$$" "$root/$to"
    echo "installed $root/$to"
done

cat <<EOF

Try it:       $prefix/bin/killshim demo
Your program: $prefix/bin/killshim run -- ./your-service
systemd:      Environment=LD_PRELOAD=$prefix/lib/killshim/libkillshim.so
EOF
