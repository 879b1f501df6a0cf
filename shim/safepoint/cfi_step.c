/* See cfi_step.h. Runs in signal handlers: no locks, no allocation. */
#include "cfi_step.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "cfi_row.h"

#define KS_PAGE 4096u

/* ucontext_t's gregs index of each DWARF register (cfi_step.h). */
static const unsigned char ks_greg_of[KS_CFI_NREG] = {
    REG_RAX, REG_RDX, REG_RCX, REG_RBX, REG_RSI, REG_RDI, REG_RBP, REG_RSP, REG_R8,
    REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP,
};

/* What a call leaves the caller: rbx, rbp, rsp, r12-r15 (SysV ABI). The
 * rest, unless the frame's CFI saved them, are unknown in the caller. */
#define KS_CALLEE_SAVED ((1u << 3) | (1u << 6) | (1u << 7) | (0xfu << 12))

/* A word of the stack (or of any mapping: a DRAP slot, a signal frame).
 * Pages are probed through the caller's readable callback once each while
 * they are contiguous with the range already probed. The probe and the load
 * are two steps, as in libunwind's checked reads: the stack walked is the
 * interrupted thread's own, which no one unmaps under it. */
static KS_CFI_SAFE int ks_load(struct ks_cfi_cursor *c, uintptr_t addr, uintptr_t *val)
{
    /* User space ends below 2^56 (2^47 without 5-level paging): the page
     * arithmetic below cannot wrap. */
    if (addr < KS_PAGE || addr >= ((uintptr_t)1 << 56))
        return -1;
    if (addr < c->ok_lo || addr + 8 > c->ok_hi) {
        uintptr_t lo = addr & ~(uintptr_t)(KS_PAGE - 1);
        uintptr_t hi = (addr + 8 + KS_PAGE - 1) & ~(uintptr_t)(KS_PAGE - 1);
        for (uintptr_t pg = lo; pg < hi; pg += KS_PAGE)
            if ((pg < c->ok_lo || pg >= c->ok_hi) && !c->env->readable(pg))
                return -1;
        if (c->ok_hi > c->ok_lo && (hi == c->ok_lo || lo == c->ok_hi || (lo < c->ok_hi && hi > c->ok_lo))) {
            c->ok_lo = lo < c->ok_lo ? lo : c->ok_lo;
            c->ok_hi = hi > c->ok_hi ? hi : c->ok_hi;
        } else {
            c->ok_lo = lo;
            c->ok_hi = hi;
        }
    }
    __builtin_memcpy(val, (const void *)addr, sizeof *val);
    return 0;
}

#define KS_EXPR_DEPTH 8

static KS_CFI_SAFE int ks_push(uintptr_t *st, int *n, uintptr_t v)
{
    if (*n == KS_EXPR_DEPTH)
        return -1;
    st[(*n)++] = v;
    return 0;
}

/* One operation of a DWARF expression on ST: what gcc's realigned frames
 * (DW_OP_breg6 k; DW_OP_deref) and the linkers' PLT entries (breg7, breg16,
 * lit, and, ge, shl, plus) use, and the plain arithmetic next to them. */
static KS_CFI_SAFE int ks_op(struct ks_cfi_cursor *c, struct ks_rd *r, uintptr_t *st, int *n)
{
    uint8_t op = ks_rd_u8(r);
    if (op >= 0x30 && op <= 0x4f)                                   /* lit0..lit31 */
        return ks_push(st, n, op - 0x30u);
    if (op >= 0x70 && op < 0x70 + KS_CFI_NREG) {                   /* breg0..breg16 */
        int64_t off = ks_rd_sleb(r);
        if (!(c->known & (1u << (op - 0x70))))
            return -1;
        return ks_push(st, n, c->reg[op - 0x70] + (uintptr_t)off);
    }
    if (op == 0x08)                                                 /* const1u */
        return ks_push(st, n, ks_rd_u8(r));
    if (op == 0x10)                                                 /* constu */
        return ks_push(st, n, ks_rd_uleb(r));
    if (op == 0x11)                                                 /* consts */
        return ks_push(st, n, (uintptr_t)ks_rd_sleb(r));
    if (*n < 1)
        return -1;
    uintptr_t *top = &st[*n - 1];
    if (op == 0x06)                                                 /* deref */
        return ks_load(c, *top, top);
    if (op == 0x23) {                                               /* plus_uconst */
        *top += ks_rd_uleb(r);
        return 0;
    }
    if (*n < 2)
        return -1;
    uintptr_t b = st[--*n], a = st[*n - 1];
    switch (op) {
    case 0x1a: a &= b; break;                                       /* and */
    case 0x1c: a -= b; break;                                       /* minus */
    case 0x22: a += b; break;                                       /* plus */
    case 0x24: a = b < 64 ? a << b : 0; break;                      /* shl */
    case 0x2a: a = (intptr_t)a >= (intptr_t)b; break;               /* ge (signed) */
    default: return -1;
    }
    st[*n - 1] = a;
    return 0;
}

/* The DWARF block at AT (in BOUNDS, the CFI segment), with PUSH (the CFA,
 * for DW_CFA_expression) on the stack first if non-NULL. */
static KS_CFI_SAFE int ks_eval(struct ks_cfi_cursor *c, const struct ks_cfi_fde *f, int64_t at,
                               const uintptr_t *push, uintptr_t *out)
{
    struct ks_rd r = {(uintptr_t)at, f->lo, f->hi, 0};
    uint64_t len = ks_rd_uleb(&r);
    if (r.bad || len > r.hi - r.p)
        return -1;
    r.hi = r.p + len;
    uintptr_t st[KS_EXPR_DEPTH];
    int n = 0;
    if (push)
        st[n++] = *push;
    while (r.p < r.hi)
        if (ks_op(c, &r, st, &n) != 0 || r.bad)
            return -1;
    if (n < 1)
        return -1;
    *out = st[n - 1];
    return 0;
}

/* glibc's __restore_rt: mov $15, %rax; syscall (rt_sigreturn). The return
 * address the kernel gives a handler, so the frame whose ip it is holds the
 * interrupted registers in the ucontext at its sp (libunwind tests these
 * bytes the same way). */
static KS_CFI_SAFE int ks_is_sigreturn(const struct ks_cfi_cursor *c)
{
    static const unsigned char code[9] = {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
    uintptr_t ip = c->reg[KS_CFI_RIP];
    struct ks_cfi_module m;
    if (c->env->find(ip, &m) != 0 || ip < m.pc_lo || ip > m.pc_hi || m.pc_hi - ip < sizeof code)
        return 0;
    return __builtin_memcmp((const void *)ip, code, sizeof code) == 0;
}

void ks_cfi_init(struct ks_cfi_cursor *c, const ucontext_t *uc, const struct ks_cfi_env *env)
{
    memset(c, 0, sizeof *c);
    c->env = env;
    for (int r = 0; r < KS_CFI_NREG; r++)
        c->reg[r] = (uintptr_t)uc->uc_mcontext.gregs[ks_greg_of[r]];
    c->known = (1u << KS_CFI_NREG) - 1;
    c->exact = 1;
    c->signal = ks_is_sigreturn(c);
}

int ks_cfi_proc_start(struct ks_cfi_cursor *c, uintptr_t *start)
{
    struct ks_cfi_fde f;
    int rc = ks_cfi_row(c->env, c->reg[KS_CFI_RIP] - (c->exact ? 0 : 1), NULL, &f);
    *start = rc ? 0 : f.start;
    return rc;
}

/* Out of a signal frame: every register from the ucontext at its sp. */
static KS_CFI_SAFE int ks_step_signal(struct ks_cfi_cursor *c, struct ks_cfi_cursor *next)
{
    uintptr_t gregs = c->reg[KS_CFI_RSP] + offsetof(ucontext_t, uc_mcontext.gregs);
    for (int r = 0; r < KS_CFI_NREG; r++)
        if (ks_load(next, gregs + ks_greg_of[r] * sizeof(greg_t), &next->reg[r]) != 0)
            return -1;
    next->known = (1u << KS_CFI_NREG) - 1;
    next->exact = 1;
    return 1;
}

/* Register R of the caller under RULE. 1: known, 0: unknown, -1: refused. */
static KS_CFI_SAFE int ks_restore(struct ks_cfi_cursor *c, const struct ks_cfi_fde *f, int r,
                                  struct ks_rule rule, uintptr_t cfa, uintptr_t *out)
{
    uintptr_t addr;
    switch (rule.how) {
    case KS_R_SAME:
        if (!(KS_CALLEE_SAVED & (1u << r)) || !(c->known & (1u << r)))
            return 0;
        *out = c->reg[r];
        return 1;
    case KS_R_UNDEF:
    case KS_R_UNKNOWN: return 0;
    case KS_R_OFFSET: return ks_load(c, cfa + (uintptr_t)rule.val, out) == 0 ? 1 : -1;
    case KS_R_VAL_OFFSET: *out = cfa + (uintptr_t)rule.val; return 1;
    case KS_R_REG:
        if (!(c->known & (1u << rule.val)))
            return 0;
        *out = c->reg[rule.val];
        return 1;
    case KS_R_EXPR:
        if (ks_eval(c, f, rule.val, &cfa, &addr) != 0)
            return -1;
        return ks_load(c, addr, out) == 0 ? 1 : -1;
    case KS_R_VAL_EXPR: return ks_eval(c, f, rule.val, &cfa, out) == 0 ? 1 : -1;
    }
    return -1;
}

int ks_cfi_step(struct ks_cfi_cursor *c)
{
    struct ks_cfi_cursor next = *c;
    next.known = 0;
    next.exact = 0;
    if (c->signal) {
        if (ks_step_signal(c, &next) != 1)
            return -1;
    } else {
        struct ks_row row;
        struct ks_cfi_fde f;
        if (ks_cfi_row(c->env, c->reg[KS_CFI_RIP] - (c->exact ? 0 : 1), &row, &f) != 0)
            return -1;
        if (row.r[KS_CFI_RIP].how == KS_R_UNDEF)
            return 0;   /* the outermost frame */
        uintptr_t cfa;
        if (row.cfa.how == KS_R_EXPR) {
            if (ks_eval(c, &f, row.cfa.val, NULL, &cfa) != 0)
                return -1;
        } else if (row.cfa.val >= 0 && row.cfa.val < KS_CFI_NREG &&
                   (c->known & (1u << row.cfa.val))) {
            cfa = c->reg[row.cfa.val] + (uintptr_t)row.cfa_off;
        } else {
            return -1;
        }
        for (int r = 0; r < KS_CFI_NREG; r++) {
            int rc = ks_restore(c, &f, r, row.r[r], cfa, &next.reg[r]);
            if (rc < 0)
                return -1;
            next.known |= (uint32_t)rc << r;
        }
        if (!(next.known & (1u << KS_CFI_RIP)))
            return -1;   /* a return address it cannot find is no frame */
        next.reg[KS_CFI_RSP] = cfa;   /* x86-64: the CFA is the caller's sp */
        next.known |= 1u << KS_CFI_RSP;
        next.exact = f.signal;
    }
    /* Keep the stack pages probed by this step (ks_load wrote them into
     * NEXT for a signal frame, into C otherwise). */
    if (!c->signal) {
        next.ok_lo = c->ok_lo;
        next.ok_hi = c->ok_hi;
    }
    if (next.reg[KS_CFI_RIP] == 0)
        return -1;
    next.signal = ks_is_sigreturn(&next);
    *c = next;
    return 1;
}
