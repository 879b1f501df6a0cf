/* See padcheck.h. */
#include "padcheck.h"

#include <dlfcn.h>
#include <string.h>

#include "gotsym.h"
#include "lpad.h"
#include "safepoint.h"
#include "shim/unwind/unwind.h"

/* Functions a landing pad may call, by address: linked statically, or
 * called directly. Through the PLT, gotsym.c names them (and the sanitizers'
 * report functions, and __stack_chk_fail) by relocation; those are not
 * looked up here: the shim imports them itself, and a lookup after start
 * would bind them lazily, which doorbell_test forbids. */
#define KS_LP_KNOWN 5
static const char *const ks_lp_names[KS_LP_KNOWN] = {
    "_ZSt9terminatev", "__cxa_call_terminate", "_Unwind_Resume", "__cxa_throw", "__cxa_rethrow"};
static uintptr_t ks_lp_addrs[KS_LP_KNOWN];

static uintptr_t ks_gcc_personality;
static uintptr_t ks_forced_unwind_ti;

void ks_padcheck_init(void *libgcc)
{
    if (libgcc)
        ks_gcc_personality = (uintptr_t)dlsym(libgcc, "__gcc_personality_v0");
    ks_forced_unwind_ti = (uintptr_t)dlsym(RTLD_DEFAULT, "_ZTIN10__cxxabiv115__forced_unwindE");
    for (int i = 0; i < KS_LP_KNOWN; i++)
        ks_lp_addrs[i] = (uintptr_t)dlsym(RTLD_DEFAULT, ks_lp_names[i]);
}

/* The LSDA's catch-type callback: is it abi::__forced_unwind? Every pointer
 * is checked to lie in a loaded segment before it is read. */
static int ks_is_forced_unwind(uint64_t ptr, int indirect, void *arg)
{
    (void)arg;
    if (indirect) {
        if (!ks_safepoint_readable(ptr, sizeof(uintptr_t)))
            return 0;
        ptr = *(const uintptr_t *)ptr;
    }
    if (ks_forced_unwind_ti && ptr == ks_forced_unwind_ti)
        return 1;
    /* A copy of the type_info in a statically linked runtime: compare names.
     * Itanium ABI: { vtable, const char *name }. */
    if (!ks_safepoint_readable(ptr, 2 * sizeof(uintptr_t)))
        return 0;
    const char *name = ((const char *const *)ptr)[1];
    static const char want[] = "N10__cxxabiv115__forced_unwindE";
    if (!ks_safepoint_readable((uintptr_t)name, sizeof want + 1))
        return 0;
    if (*name == '*')
        name++;
    return memcmp(name, want, sizeof want) == 0;
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

/* A scan at DEPTH of a pad of frame FRAME. */
struct ks_pad_ctx {
    int depth;
    const unw_proc_info_t *frame;
    struct ks_pad_work *work;
};

static int ks_pad_check(const struct ks_lsda_out *out, const unw_proc_info_t *frame, int depth,
                        struct ks_pad_work *work);
static int ks_frame_eval(const unw_proc_info_t *pi, uintptr_t lookup, struct ks_lsda_out *out,
                         int depth, struct ks_pad_work *work);

static int ks_pi_has(const unw_proc_info_t *pi, uintptr_t ip)
{
    return ip >= pi->start_ip && ip < pi->end_ip;
}

/* The procedure holding IP: the frame's own (a pad in the function's body),
 * the one looked up last (GCC's F.cold, which has an FDE and call-site
 * table of its own, holds F's pads: every _Unwind_Resume of F's pads
 * returns there), else libunwind's lookup into C->work. NULL if none. The
 * lookup is the deepest the scan goes on the stack; the two others spare
 * it. */
static const unw_proc_info_t *ks_pad_proc(const struct ks_pad_ctx *c, uintptr_t ip)
{
    struct ks_pad_work *w = c->work;
    if (ks_pi_has(c->frame, ip))
        return c->frame;
    /* A copy: a deeper level may replace OTHER while this one's is used. */
    unw_proc_info_t *pi = &w->pi[c->depth];
    if (w->have_other && ks_pi_has(&w->other, ip)) {
        *pi = w->other;
        return pi;
    }
    memset(pi, 0, sizeof *pi);
    if (ks_unw.get_proc_info_by_ip(ks_unw.as, ip, pi, NULL) != 0)
        return NULL;
    w->other = *pi;
    w->have_other = 1;
    return pi;
}

/* The unwind goes on from the call that returns to RET (a rethrow, or
 * _Unwind_Resume from a pad): in the frame of that call, its own LSDA
 * decides, as the personality will. A terminate there, or in the pad it
 * enters, is the pad's terminate. */
static int ks_lp_unwinds(uintptr_t ret, void *arg)
{
    const struct ks_pad_ctx *c = arg;
    if (c->depth >= KS_PAD_DEPTH)
        return KS_LP_UNKNOWN;
    const unw_proc_info_t *pi = ks_pad_proc(c, ret - 1);
    if (!pi)
        return KS_LP_UNKNOWN;
    if (!pi->lsda)
        return KS_LP_CLEAN;
    struct ks_lsda_out *out = &c->work->out[c->depth];
    int pad = ks_frame_eval(pi, ret - 1, out, c->depth + 1, c->work);
    switch (out->verdict) {
    case KS_LSDA_NOTHING: return KS_LP_CLEAN;
    case KS_LSDA_TERMINATE: return KS_LP_TERMINATES;
    case KS_LSDA_CLEANUP: case KS_LSDA_RETHROWS: return pad;
    default: return KS_LP_UNKNOWN;   /* catch (...), a table it cannot read */
    }
}

static int ks_pad_check(const struct ks_lsda_out *out, const unw_proc_info_t *frame, int depth,
                        struct ks_pad_work *work)
{
    if (!out->landing_pad ||
        (out->verdict != KS_LSDA_CLEANUP && out->verdict != KS_LSDA_CATCH_ALL &&
         out->verdict != KS_LSDA_RETHROWS))
        return KS_LP_CLEAN;
    struct ks_pad_ctx ctx = {depth, frame, work};
    const struct ks_lp_env env = {ks_lp_read, ks_lp_target, ks_lp_unwinds, &ctx};
    return ks_lp_scan(&env, out->landing_pad, out->selector, &work->scan[depth]);
}

/* Evaluates the LSDA of frame PI at LOOKUP into OUT (OUT->verdict -1 if
 * the table lies outside every module) and scans the pad it enters (DEPTH:
 * rethrows followed so far). Returns the scan's enum ks_lp_result; a pad
 * that calls std::terminate turns the verdict into KS_LSDA_TERMINATE. */
static int ks_frame_eval(const unw_proc_info_t *pi, uintptr_t lookup, struct ks_lsda_out *out,
                         int depth, struct ks_pad_work *work)
{
    struct ks_pc_info seg;
    ks_safepoint_lookup(pi->lsda, &seg);
    if (seg.seg_hi <= pi->lsda) {
        memset(out, 0, sizeof *out);
        out->verdict = -1;
        return KS_LP_CLEAN;
    }
    struct ks_lsda_in in = {
        .buf = (const uint8_t *)pi->lsda,
        .len = seg.seg_hi - pi->lsda,
        .addr = pi->lsda,
        .func_start = pi->start_ip,
        .ip = lookup,
        .c_personality = ks_gcc_personality && pi->handler == ks_gcc_personality,
        .is_forced_unwind = ks_is_forced_unwind,
    };
    ks_lsda_eval(&in, out);
    int pad = ks_pad_check(out, pi, depth, work);
    if (pad == KS_LP_TERMINATES) {
        out->verdict = KS_LSDA_TERMINATE;
        out->nothrow_site = 0;
    }
    /* catch (...) is refused whatever its pad does; the scan only names a
     * terminate there (clang's noexcept) as what it is. */
    if (pad == KS_LP_UNKNOWN && out->verdict == KS_LSDA_CATCH_ALL)
        pad = KS_LP_CLEAN;
    return pad;
}

int ks_frame_verdict(const unw_proc_info_t *pi, uintptr_t lookup, struct ks_lsda_out *out,
                     int *pad, struct ks_pad_work *work)
{
    work->have_other = 0;
    *pad = ks_frame_eval(pi, lookup, out, 0, work);
    return out->verdict;
}
