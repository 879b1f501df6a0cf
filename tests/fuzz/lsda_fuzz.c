/* libFuzzer target: the LSDA (.gcc_except_table) evaluator of the abort
 * path (shim/safepoint/lsda.c), which reads tables out of any object mapped in the
 * program. Input: 8 bytes of IP offset, 1 byte of flags, then the table.
 * Checks: no read outside the table (ASan, exact-size copy: tools/fuzz.sh
 * builds the byte reader, dwarf_rd.c, instrumented with -DKS_CFI_SAFE=), a
 * verdict in range and the same as the one returned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/safepoint/lsda.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static int ks_fuzz_forced(uint64_t ptr, int indirect, void *arg)
{
    (void)indirect;
    (void)arg;
    return (int)(ptr & 1);   /* answers both ways, deterministically */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint64_t off;
    memcpy(&off, data, 8);
    uint8_t flags = data[8];
    size_t len = size - 9;
    uint8_t *buf = malloc(len ? len : 1);   /* exact size: ASan sees any overread */
    if (!buf)
        return 0;
    memcpy(buf, data + 9, len);
    struct ks_lsda_in in = {
        .buf = buf,
        .len = len,
        .addr = 0x400000,
        .func_start = 0x3ff000,
        .ip = 0x3ff000 + (off & 0xffff),
        .c_personality = flags & 1,
        .is_forced_unwind = ks_fuzz_forced,
        .arg = NULL,
    };
    struct ks_lsda_out out;
    memset(&out, 0, sizeof out);
    int v = ks_lsda_eval(&in, &out);
    CHECK(v == out.verdict);
    CHECK(v >= KS_LSDA_NOTHING && v <= KS_LSDA_MALFORMED);
    CHECK(ks_lsda_verdict_name(v) != NULL);
    free(buf);
    return 0;
}
