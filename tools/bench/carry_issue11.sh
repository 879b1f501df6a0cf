#!/bin/sh
# What issue 11 §3 measured of a process tree that carries the shim: 300
# execs of /bin/true from a shell that inherited it (the shell forks, each
# child execs under the shim), and a `make -j2` of a 9-file C project (make,
# its shells, gcc, cc1, as, collect2 and ld all under the shim). Each
# workload runs once per variant per round, the variants' order rotating
# (bench_startup -n 1): wall time of the whole tree and its CPU time (the
# children's user+sys, wait4), median with IQR, and the median of the
# rounds' ratios to the run without any preload.
#
#   tools/bench/carry_issue11.sh [ROUNDS] NAME=ENV ...
#
# ENV as bench_startup's ("LD_PRELOAD=/x.so"); without variants: no preload,
# an empty preloaded library, and the built shim.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bazel-bin
ROUNDS=${1:-21}
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then
    set -- plain=- empty=LD_PRELOAD="$BIN/tools/bench/libempty.so" \
        shim=LD_PRELOAD="$BIN/shim/libkillshim.so"
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/ks-carry.XXXXXX")
trap 'rm -rf "$W"' EXIT
cat > "$W/exec300" <<'X'
#!/bin/sh
i=0
while [ $i -lt 300 ]; do /bin/true; i=$((i + 1)); done
X
mkdir "$W/proj"
for i in 1 2 3 4 5 6 7 8; do
    cat > "$W/proj/f$i.c" <<X
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct rec { int k; double v; char name[32]; };
static int cmp(const void *a, const void *b) { return ((const struct rec *)a)->k - ((const struct rec *)b)->k; }
double work$i(int n)
{
    struct rec *r = calloc(n, sizeof *r);
    for (int j = 0; j < n; j++) {
        r[j].k = (j * 7919) % n;
        r[j].v = j * 0.5;
        snprintf(r[j].name, sizeof r[j].name, "r%d", j);
    }
    qsort(r, n, sizeof *r, cmp);
    double s = 0;
    for (int j = 0; j < n; j++)
        s += r[j].v * strlen(r[j].name);
    free(r);
    return s;
}
X
done
cat > "$W/proj/main.c" <<'X'
#include <stdio.h>
double work1(int), work2(int), work3(int), work4(int), work5(int), work6(int), work7(int), work8(int);
int main(void)
{
    printf("%f\n", work1(9) + work2(9) + work3(9) + work4(9) + work5(9) + work6(9) + work7(9) + work8(9));
    return 0;
}
X
printf 'OBJS = main.o f1.o f2.o f3.o f4.o f5.o f6.o f7.o f8.o\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n%%.o: %%.c\n\t$(CC) -O2 -Wall -c $< -o $@\n' > "$W/proj/Makefile"
printf '#!/bin/sh\nexec make -s -j2 -B -C "%s" >/dev/null\n' "$W/proj" > "$W/make9"
chmod +x "$W/exec300" "$W/make9"
"$W/make9" && "$W/proj/prog" >/dev/null   # the project builds and runs
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/tools/bench/bench_startup" -n 1 -r "$ROUNDS" -c "$W/exec300" "$@"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/tools/bench/bench_startup" -n 1 -r "$ROUNDS" -c "$W/make9" "$@"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
