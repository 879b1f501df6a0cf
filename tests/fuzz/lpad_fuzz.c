/* libFuzzer target: the landing pad scan of the abort's walk
 * (shim/safepoint/lpad.c and its x86 decoder), which reads the code of any
 * object mapped in the program, compiled by any compiler. Input: 1 byte of
 * selector, 1 byte of pad offset, then the code, mapped at KS_FUZZ_BASE.
 * Checks: no read outside the code given (ASan, exact-size copy; the
 * reader hands out only what is there), the scan ends (libFuzzer's
 * timeout: the budget and the visited set bound it) with a result in
 * range, and the same result a second time from a dirty work area. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/safepoint/lpad.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define KS_FUZZ_BASE 0x10000u

struct ks_fuzz_code {
    const uint8_t *b;
    size_t n;
};

static size_t ks_fuzz_read(uintptr_t addr, uint8_t *buf, size_t n, void *arg)
{
    const struct ks_fuzz_code *c = arg;
    if (addr < KS_FUZZ_BASE || addr - KS_FUZZ_BASE >= c->n)
        return 0;
    size_t off = addr - KS_FUZZ_BASE;
    size_t k = n < c->n - off ? n : c->n - off;
    memcpy(buf, c->b + off, k);
    return k;
}

/* Every kind of call target, by address (deterministic). */
static int ks_fuzz_target(uintptr_t addr, int slot, void *arg)
{
    (void)arg;
    return (int)(((addr >> 2) + (uintptr_t)slot) % 4);
}

static int ks_fuzz_unwinds(uintptr_t ret, void *arg)
{
    (void)arg;
    return (int)(ret % 3);   /* CLEAN, TERMINATES, UNKNOWN */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int64_t selector = (int8_t)data[0];
    uintptr_t pad = KS_FUZZ_BASE + data[1];
    size_t len = size - 2;
    uint8_t *code = malloc(len ? len : 1);   /* exact size: ASan sees any overread */
    if (!code)
        return 0;
    memcpy(code, data + 2, len);
    struct ks_fuzz_code c = {code, len};
    struct ks_lp_env env = {ks_fuzz_read, ks_fuzz_target, ks_fuzz_unwinds, &c};
    static struct ks_lp_work work;
    int r = ks_lp_scan(&env, pad, selector, &work);
    CHECK(r == KS_LP_CLEAN || r == KS_LP_TERMINATES || r == KS_LP_UNKNOWN);
    memset(&work, 0xa5, sizeof work);
    CHECK(ks_lp_scan(&env, pad, selector, &work) == r);
    free(code);
    return 0;
}
