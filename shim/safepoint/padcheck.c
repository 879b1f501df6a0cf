/* See padcheck.h. */
#include "padcheck.h"

#include <dlfcn.h>
#include <string.h>

#include "gotsym.h"
#include "lpad.h"
#include "safepoint.h"

/* Functions a landing pad may call, by address (a program linked with them
 * statically, or a GOT slot already bound), and their enum ks_lp_target. */
#define KS_LP_KNOWN 6
static const char *const ks_lp_names[KS_LP_KNOWN] = {
    "_ZSt9terminatev", "__cxa_call_terminate", "_Unwind_Resume", "__cxa_throw",
    "__cxa_rethrow",   "__stack_chk_fail"};
static uintptr_t ks_lp_addrs[KS_LP_KNOWN];

void ks_padcheck_init(void)
{
    for (int i = 0; i < KS_LP_KNOWN; i++)
        ks_lp_addrs[i] = (uintptr_t)dlsym(RTLD_DEFAULT, ks_lp_names[i]);
}

static size_t ks_lp_read(uintptr_t addr, uint8_t *buf, size_t n, void *arg)
{
    (void)arg;
    struct ks_pc_info pi;
    ks_safepoint_lookup(addr, &pi);
    if (pi.seg_hi <= addr || addr < pi.seg_lo)
        return 0;
    if (n > pi.seg_hi - addr)
        n = pi.seg_hi - addr;
    memcpy(buf, (const void *)addr, n);
    return n;
}

static int ks_lp_kind_of_addr(uintptr_t addr)
{
    for (int i = 0; i < KS_LP_KNOWN; i++)
        if (addr && addr == ks_lp_addrs[i])
            return ks_gotsym_kind_of_name(ks_lp_names[i]);
    return KS_LP_OTHER;
}

/* A pointer slot: the GOT entry's relocation names it (bound or not). */
static int ks_lp_slot_kind(uintptr_t slot)
{
    int k = ks_safepoint_got_kind(slot);
    if (k == KS_LP_OTHER && ks_safepoint_readable(slot, sizeof(uintptr_t)))
        k = ks_lp_kind_of_addr(*(const uintptr_t *)slot);
    return k;
}

/* What a call to ADDR is: a known function, a PLT stub ([endbr64] [bnd] jmp
 * *slot(%rip)), or (DEPTH 0) a local helper whose first instructions call
 * std::terminate: clang's __clang_call_terminate (push; call
 * __cxa_begin_catch; call std::terminate), hidden in the program. */
static int ks_lp_code_kind(uintptr_t addr, int depth)
{
    int k = ks_lp_kind_of_addr(addr);
    uint8_t b[32];
    size_t n = k == KS_LP_OTHER ? ks_lp_read(addr, b, sizeof b, NULL) : 0;
    size_t i = 0;
    if (n >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa)
        i = 4;
    if (i < n && b[i] == 0xf2)
        i++;
    if (i + 6 <= n && b[i] == 0xff && b[i + 1] == 0x25) {
        int32_t d;
        memcpy(&d, b + i + 2, 4);
        return ks_lp_slot_kind(addr + i + 6 + (uintptr_t)(intptr_t)d);
    }
    for (int insn = 0; k == KS_LP_OTHER && depth == 0 && insn < 3 && i < n; insn++) {
        if (b[i] >= 0x50 && b[i] <= 0x57) {
            i++;
        } else if (b[i] == 0xe8 && i + 5 <= n) {
            int32_t d;
            memcpy(&d, b + i + 1, 4);
            if (ks_lp_code_kind(addr + i + 5 + (uintptr_t)(intptr_t)d, 1) == KS_LP_TERMINATE)
                return KS_LP_TERMINATE;
            i += 5;
        } else {
            break;
        }
    }
    return k;
}

static int ks_lp_target(uintptr_t addr, int slot, void *arg)
{
    (void)arg;
    return slot ? ks_lp_slot_kind(addr) : ks_lp_code_kind(addr, 0);
}

int ks_pad_check(const struct ks_lsda_out *out)
{
    if (!out->landing_pad ||
        (out->verdict != KS_LSDA_CLEANUP && out->verdict != KS_LSDA_CATCH_ALL &&
         out->verdict != KS_LSDA_RETHROWS))
        return KS_LP_CLEAN;
    static const struct ks_lp_env env = {ks_lp_read, ks_lp_target, NULL};
    return ks_lp_scan(&env, out->landing_pad, out->selector);
}
