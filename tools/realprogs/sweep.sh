# shellcheck shell=bash
# The sweep: Debian's multithreaded programs with one workload each, run
# without the shim and under it (lib.sh: pair), exit status, output and time
# compared. Sourced by tools/realprogs.sh; each group_* function is a group.

# The input: SIZE_MB of half text (sortable lines), half random bytes.
make_input() {
    [ -s "$WORK/input" ] && return
    local half=$((SIZE_MB * 1024 * 1024 / 2))
    { awk 'BEGIN { for (i = 1; ; i++) printf "%08d line %d %s\n", (i * 7919) % 1000003, i, (i % 7 ? "alpha" : "omega") }' || true; } |
        head -c "$half" >"$WORK/text"
    head -c "$half" /dev/urandom >"$WORK/rand"
    cat "$WORK/text" "$WORK/rand" >"$WORK/input"
}

# Compressors: the compressed bytes (where the format has no timestamp) and
# the round trip, each run with and without the shim.
group_compress() {
    make_input
    local spec name comp decomp ext
    for spec in "xz -T2 -6|xz -d -T2 -c|xz" "zstd -T2 -12 -q|zstd -d -T2 -q -c|zst" \
        "pigz -p 2 -9|pigz -d -p 2 -c|gz" "pbzip2 -p2 -9|pbzip2 -d -p2 -c|bz2" \
        "7z a -si -so -txz -mmt=2 -mx=5 x|7z e -si -so -txz|7z.xz"; do
        IFS='|' read -r comp decomp ext <<<"$spec"
        name=${comp%% *}
        need_bin compress "$name" "$name" || continue
        # shellcheck disable=SC2086
        RUN_IN=$WORK/input pair compress "$name: $comp" $comp
        # The round trip of what the plain run wrote, both ways.
        cp "$WORK/$PAIR_TAG.plain.out" "$WORK/packed.$ext"
        # shellcheck disable=SC2086
        RUN_IN=$WORK/packed.$ext FILTER=sha pair compress "$name: $decomp" $decomp
        [ "$(sha256sum <"$WORK/$PAIR_TAG.shim.out")" = "$(sha256sum <"$WORK/input")" ] ||
            record DIFF compress "$name: round trip" - - "the shim run's output is not the input"
    done
}


group_sort() {
    make_input
    need_bin sort sort sort || return
    RUN_IN=$WORK/text pair sort "sort --parallel=2" sort --parallel=2 -S 16M -T "$WORK"
}

# git: a repository of 600 files (fixed names, dates and contents, so
# hashes are equal), a commit, a threaded repack, fsck, a threaded grep, a
# clone through the pack protocol (index-pack's threads).
group_git() {
    need_bin git git git || return
    local src=$WORK/git-src
    rm -rf "$src"
    mkdir -p "$src"
    local i
    for ((i = 0; i < 600; i++)); do
        awk -v n="$i" 'BEGIN { for (j = 0; j < 200; j++) printf "file %d line %d %s\n", n, j, (j * n) % 97 }' \
            >"$src/f$i.txt"
    done
    export GIT_AUTHOR_NAME=ks GIT_AUTHOR_EMAIL=ks@localhost GIT_COMMITTER_NAME=ks \
        GIT_COMMITTER_EMAIL=ks@localhost GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" \
        GIT_COMMITTER_DATE="2020-01-01T00:00:00Z" GIT_CONFIG_NOSYSTEM=1 HOME=$WORK
    local m
    for m in plain shim; do rm -rf "$WORK/git.$m"; cp -r "$src" "$WORK/git.$m"; done
    # Each step runs in the copy of its own mode: @MODE@ in an argument.
    pair git "init" git -C "$WORK/git.@MODE@" init -q -b main
    pair git "add -A" git -C "$WORK/git.@MODE@" add -A
    pair git "commit" git -C "$WORK/git.@MODE@" commit -q -m one
    pair git "rev-parse HEAD" git -C "$WORK/git.@MODE@" rev-parse HEAD
    FILTER=nothing pair git "repack -adf --threads=2" git -C "$WORK/git.@MODE@" repack -q -adf --threads=2
    pair git "fsck" git -C "$WORK/git.@MODE@" fsck --full --strict
    FILTER=sorted pair git "grep --threads=2" git -C "$WORK/git.@MODE@" grep --threads=2 -n "line 7 "
    rm -rf "$WORK/clone.plain" "$WORK/clone.shim"
    pair git "clone --no-local" git clone -q --no-local "$WORK/git.@MODE@" "$WORK/clone.@MODE@"
    pair git "log --stat" git -C "$WORK/clone.@MODE@" log --stat --format=%H%n%s
    unset GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL GIT_AUTHOR_DATE \
        GIT_COMMITTER_DATE GIT_CONFIG_NOSYSTEM
}

# Filters for pair (MODE TAG on the command line, the run's stdout in).
nothing() { cat >/dev/null; }
sorted() { sort; }
sha() { sha256sum | cut -c1-16; }

# ffmpeg: a generated clip (test pattern, tone) encoded with threads, then
# decoded to per-frame checksums.
group_ffmpeg() {
    need_bin ffmpeg ffmpeg ffmpeg || return
    local secs=$((QUICK ? 3 : 10))
    local gen=(ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i "testsrc2=size=640x360:rate=25:duration=$secs"
        -f lavfi -i "sine=frequency=440:duration=$secs" -threads 2 -bitexact)
    FILTER=nothing pair ffmpeg "encode mpeg4+aac, 2 threads" "${gen[@]}" -c:v mpeg4 -q:v 4 -c:a aac \
        -y "$WORK/clip.@MODE@.mp4"
    cmp -s "$WORK/clip.plain.mp4" "$WORK/clip.shim.mp4" ||
        record DIFF ffmpeg "encoded bytes" - - "clip.plain.mp4 and clip.shim.mp4 differ"
    FILTER=nothing pair ffmpeg "encode libx264, 2 threads" "${gen[@]}" -c:v libx264 -preset fast \
        -an -y "$WORK/x264.@MODE@.mkv"
    pair ffmpeg "decode to framemd5" ffmpeg -nostdin -hide_banner -loglevel error -threads 2 \
        -i "$WORK/clip.plain.mp4" -f framemd5 -
}

# A build of a C project: 12 files, by make -j2 and by ninja -j2. The
# objects and the program's output must be the same.
group_build() {
    need_bin build make make gcc ninja || return
    local proj=$WORK/proj i
    rm -rf "$proj"
    mkdir -p "$proj"
    for ((i = 0; i < 12; i++)); do
        cat >"$proj/m$i.c" <<EOF
#include <stdio.h>
static unsigned long mix$i(unsigned long x) { for (int k = 0; k < 1000; k++) x = x * 6364136223846793005ul + $i; return x; }
unsigned long f$i(unsigned long x) { return mix$i(x) ^ $((i * 7919)); }
EOF
    done
    {
        echo '#include <stdio.h>'
        for ((i = 0; i < 12; i++)); do echo "unsigned long f$i(unsigned long);"; done
        echo 'int main(void) { unsigned long x = 1;'
        for ((i = 0; i < 12; i++)); do echo "  x = f$i(x);"; done
        # shellcheck disable=SC2028
        echo '  printf("%lu\n", x); return 0; }'
    } >"$proj/main.c"
    local objs="" o
    for ((i = 0; i < 12; i++)); do objs="$objs m$i.o"; done
    # shellcheck disable=SC2016
    printf 'CFLAGS=-O2\nprog: main.o%s\n\t$(CC) -o $@ $^\n%%.o: %%.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n' "$objs" >"$proj/Makefile"
    {
        # shellcheck disable=SC2016
        printf 'rule cc\n  command = gcc -O2 -c -o $out $in\nrule link\n  command = gcc -o $out $in\n'
        for o in main $objs; do o=${o%.o}; printf 'build %s.o: cc %s.c\n' "$o" "$o"; done
        printf 'build prog: link main.o%s\n' "$objs"
    } >"$proj/build.ninja"
    local m
    for m in plain shim; do rm -rf "$WORK/proj.$m"; cp -r "$proj" "$WORK/proj.$m"; done
    FILTER=nothing pair build "make -j2" make -s -j2 -C "$WORK/proj.@MODE@"
    same_files build "make -j2: objects" "$WORK/proj.plain" "$WORK/proj.shim" "*.o"
    pair build "the program make built" "$WORK/proj.@MODE@/prog"
    for m in plain shim; do rm -rf "$WORK/nproj.$m"; cp -r "$proj" "$WORK/nproj.$m"; done
    FILTER=nothing pair build "ninja -j2" ninja -C "$WORK/nproj.@MODE@" -j2
    same_files build "ninja -j2: objects" "$WORK/nproj.plain" "$WORK/nproj.shim" "*.o"
}

# same_files GROUP NAME DIR_A DIR_B GLOB: the files GLOB of both have the
# same bytes (one row; DIFF names the first that differ).
same_files() {
    local group=$1 name=$2 a=$3 b=$4 glob=$5 f bad="" n=0
    for f in "$a"/$glob; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        cmp -s "$f" "$b/${f##*/}" || bad="$bad ${f##*/}"
    done
    if [ "$n" -eq 0 ]; then record DIFF "$group" "$name" - - "no $glob built"
    elif [ -n "$bad" ]; then record DIFF "$group" "$name" - - "differ:$bad"
    else record same "$group" "$name" - - "$n files identical"
    fi
}

# Interpreters' thread programs (tools/realprogs/threads.*): each starts
# threads that share a lock and prints a deterministic result.
group_interp() {
    local d=$REALPROGS_DIR
    need_bin interp perl perl && pair interp "perl threads" perl "$d/threads.pl"
    need_bin interp python3 /usr/bin/python3 && pair interp "python3 threading" /usr/bin/python3 "$d/threads.py"
    need_bin interp ruby ruby && pair interp "ruby Thread" ruby "$d/threads.rb"
    need_bin interp node node && pair interp "node worker_threads" node "$d/threads.js"
    need_bin interp java java && RUN_TIMEOUT=120 pair interp "java threads" java "$d/Threads.java"
}

# stress-ng's thread, mutex, futex, fork and signal stressors: both runs
# must pass; their rates (bogo ops/s) are reported.
group_stress() {
    need_bin stress stress-ng stress-ng || return
    local t=$((QUICK ? 3 : 10)) s
    for s in pthread mutex futex fork signal; do
        pair stress "stress-ng --$s 2" stress-ng --"$s" 2 -t "${t}s" \
            --metrics-brief --yaml "$WORK/stress.$s.@MODE@.yaml"
        local rp rs
        rp=$(stress_rate "$WORK/stress.$s.plain.yaml")
        rs=$(stress_rate "$WORK/stress.$s.shim.yaml")
        # Rates swing under others' load here; half the rate is far beyond.
        # A rate under half is measured twice more each way, alternately,
        # without the lister; the best of each way stands (as recheck_cpu).
        if under_half "$rp" "$rs"; then
            local m r
            for _ in 1 2; do
                for m in plain shim; do
                    NO_LISTER=1 run_one "$m" "$PAIR_TAG.recheck" stress-ng --"$s" 2 -t "${t}s" \
                        --metrics-brief --yaml "$WORK/stress.$s.$m.yaml"
                    r=$(stress_rate "$WORK/stress.$s.$m.yaml")
                    if [ "$m" = plain ]; then
                        rp=$(awk -v a="${rp:-0}" -v b="${r:-0}" 'BEGIN { print (b > a ? b : a) }')
                    else
                        rs=$(awk -v a="${rs:-0}" -v b="${r:-0}" 'BEGIN { print (b > a ? b : a) }')
                    fi
                done
            done
        fi
        if under_half "$rp" "$rs"; then
            record DIFF stress "stress-ng --$s 2: rate" "$rp" "$rs" "bogo ops/s without / with the shim: under half"
        else
            record INFO stress "stress-ng --$s 2: rate" "$rp" "$rs" "bogo ops/s without / with the shim"
        fi
    done
}

under_half() { awk -v p="${1:-0}" -v s="${2:-0}" 'BEGIN { exit !(s < p / 2 || p == 0) }'; }
stress_rate() { awk '/bogo-ops-per-second-real-time:/ { printf "%.0f", $2; exit }' "$1" 2>/dev/null; }

# Namespace tools: the kernel lets only a single-threaded process
# unshare(CLONE_NEWUSER) or setns into a user or mount namespace.
group_ns() {
    need_bin ns unshare unshare && pair ns "unshare --user --map-root-user id -u" unshare --user --map-root-user id -u
    need_bin ns nsenter nsenter && pair ns "nsenter -t PID -m true" nsenter -t "$$" -m true
}
