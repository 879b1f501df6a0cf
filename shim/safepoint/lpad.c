/* See lpad.h. The interpreter knows what a landing pad's dispatch needs:
 * register and stack-slot moves (clang -O0 spills the selector to the
 * frame), immediate loads, add/sub/cmp/test/xor, lea, push/pop, branches,
 * calls and returns. Any other instruction ends the path as KS_LP_UNKNOWN:
 * guessing its length could turn data into a call. */
#include "lpad.h"

#include <string.h>

#include "x86_decode.h"

#define KS_LP_BUDGET 2048   /* instructions over all paths */
#define KS_LP_PENDING 32    /* branches whose other side is still to follow (some
                               220 bytes each, on the signal handler's stack) */
#define KS_LP_VISITED 64    /* branch targets already followed */
#define KS_LP_SLOTS 4       /* stack slots remembered */

enum { KS_RSP = 4, KS_RBP = 5 };
enum { KS_F_NONE, KS_F_SUB, KS_F_ADD, KS_F_LOGIC };

struct ks_lp_state {
    uintptr_t pc;
    uint16_t known;                 /* bit r: val[r] holds register r */
    uint64_t val[16];
    int8_t fop, fwide;              /* the last flag-setting operation */
    uint64_t fa, fb;
    int nslot;
    int8_t slot_base[KS_LP_SLOTS];
    int32_t slot_disp[KS_LP_SLOTS];
    uint64_t slot_val[KS_LP_SLOTS];
};

struct ks_lp_run {
    const struct ks_lp_env *env;
    struct ks_lp_state pend[KS_LP_PENDING];
    int npend;
    uintptr_t visited[KS_LP_VISITED];
    int nvisited;
    int budget;
    int unknown;
};

static uint64_t ks_mask(int wide, uint64_t v) { return wide ? v : (uint32_t)v; }

static int ks_slot_find(const struct ks_lp_state *s, const struct ks_x86_insn *in)
{
    for (int i = 0; i < s->nslot; i++)
        if (s->slot_base[i] == in->base && s->slot_disp[i] == in->disp)
            return i;
    return -1;
}

/* A write of V (KNOWN) to the memory operand of IN. */
static void ks_slot_store(struct ks_lp_state *s, const struct ks_x86_insn *in, int known, uint64_t v)
{
    if (in->base != KS_RBP && in->base != KS_RSP)
        return;   /* not the frame: cannot alias a spilled selector we track */
    int i = ks_slot_find(s, in);
    if (!known) {
        if (i >= 0)
            s->slot_base[i] = -1;
        return;
    }
    if (i < 0) {
        i = s->nslot < KS_LP_SLOTS ? s->nslot++ : 0;
        s->slot_base[i] = (int8_t)in->base;
        s->slot_disp[i] = in->disp;
    }
    s->slot_val[i] = ks_mask(in->wide, v);
}

static void ks_set(struct ks_lp_state *s, int r, int known, uint64_t v, int wide)
{
    if (known) {
        s->known |= (uint16_t)(1u << r);
        s->val[r] = ks_mask(wide, v);
    } else {
        s->known &= (uint16_t)~(1u << r);
    }
    if (r == KS_RSP)
        s->nslot = 0;   /* rsp-relative slots moved: forget them all */
}

static int ks_get(const struct ks_lp_state *s, int r, uint64_t *v)
{
    if (!(s->known & (1u << r)))
        return 0;
    *v = s->val[r];
    return 1;
}

/* Reads operand rm of IN (register or tracked slot). */
static int ks_get_rm(const struct ks_lp_state *s, const struct ks_x86_insn *in, uint64_t *v)
{
    if (in->mod == 3)
        return ks_get(s, in->rm, v);
    int i = ks_slot_find(s, in);
    if (i < 0 || in->base < 0)
        return 0;
    *v = s->slot_val[i];
    return 1;
}

/* Applies the ALU operation OP (the /digit of 0x81/0x83: 0 add, 1 or, 4 and,
 * 5 sub, 6 xor, 7 cmp; 8: test) to A and B; returns the result, sets the flags. */
static uint64_t ks_alu(struct ks_lp_state *s, int op, int ok, uint64_t a, uint64_t b, int wide)
{
    uint64_t r = 0;
    s->fop = KS_F_NONE;
    if (!ok)
        return 0;
    switch (op) {
    case 0: r = a + b; s->fop = KS_F_ADD; break;
    case 1: r = a | b; s->fop = KS_F_LOGIC; break;
    case 4: case 8: r = a & b; s->fop = KS_F_LOGIC; break;
    case 5: case 7: r = a - b; s->fop = KS_F_SUB; break;
    case 6: r = a ^ b; s->fop = KS_F_LOGIC; break;
    default: return 0;
    }
    s->fa = ks_mask(wide, a);
    s->fb = ks_mask(wide, b);
    s->fwide = (int8_t)wide;
    if (s->fop == KS_F_LOGIC)
        s->fa = ks_mask(wide, r);
    return ks_mask(wide, r);
}

/* Condition CC (the low nibble of Jcc) under S's flags: 1, 0, or -1. */
static int ks_cond(const struct ks_lp_state *s, int cc)
{
    if (s->fop == KS_F_NONE || cc == 0xa || cc == 0xb)
        return -1;   /* parity is not tracked */
    int bits = s->fwide ? 64 : 32;
    uint64_t a = s->fa, b = s->fb, r;
    int cf = 0, of = 0;
    if (s->fop == KS_F_SUB) {
        r = ks_mask(s->fwide, a - b);
        cf = a < b;
        of = (int)((((a ^ b) & (a ^ r)) >> (bits - 1)) & 1);
    } else if (s->fop == KS_F_ADD) {
        r = ks_mask(s->fwide, a + b);
        cf = r < a;
        of = (int)(((~(a ^ b) & (a ^ r)) >> (bits - 1)) & 1);
    } else {
        r = a;
    }
    int zf = r == 0, sf = (int)((r >> (bits - 1)) & 1);
    int v;
    switch (cc >> 1) {
    case 0: v = of; break;
    case 1: v = cf; break;
    case 2: v = zf; break;
    case 3: v = cf || zf; break;
    case 4: v = sf; break;
    case 6: v = sf != of; break;
    default: v = zf || sf != of; break;
    }
    return (cc & 1) ? !v : v;
}

static int ks_visited(struct ks_lp_run *run, uintptr_t pc)
{
    for (int i = 0; i < run->nvisited; i++)
        if (run->visited[i] == pc)
            return 1;
    if (run->nvisited < KS_LP_VISITED)
        run->visited[run->nvisited++] = pc;
    return 0;
}

/* Flags and registers a call clobbers (the SysV ABI's caller-saved ones). */
static void ks_after_call(struct ks_lp_state *s)
{
    s->known &= (uint16_t)((1u << 3) | (1u << 4) | (1u << 5) | (0xfu << 12));
    s->fop = KS_F_NONE;
}

enum { KS_STEP_NEXT, KS_STEP_END, KS_STEP_TERM, KS_STEP_UNKNOWN };

/* A call or jump to ADDR (SLOT: through a pointer at ADDR). */
static int ks_lp_transfer(struct ks_lp_run *run, uintptr_t addr, int slot)
{
    int t = run->env->target(addr, slot, run->env->arg);
    return t == KS_LP_TERMINATE ? KS_STEP_TERM : t == KS_LP_NORETURN ? KS_STEP_END : KS_STEP_NEXT;
}

/* A conditional branch to TO: follows the side the flags decide, both if
 * they do not. */
static int ks_lp_branch(struct ks_lp_run *run, struct ks_lp_state *s, int cc, uintptr_t to)
{
    int c = ks_cond(s, cc);
    if (c == 1) {
        s->pc = to;
    } else if (c < 0 && !ks_visited(run, to)) {
        if (run->npend >= KS_LP_PENDING)
            return KS_STEP_UNKNOWN;
        run->pend[run->npend] = *s;
        run->pend[run->npend++].pc = to;
    }
    return KS_STEP_NEXT;
}

/* ALU operation OP on a register or slot: 0x01-0x3b (op r/m,r; DIR: op
 * r,r/m), 0x81/0x83 (op r/m,imm: HAVE_IMM), 0x85 (test). */
static int ks_lp_alu(struct ks_lp_state *s, struct ks_x86_insn *in, int op, int dir, int have_imm,
                     int64_t imm)
{
    uint64_t a = 0, b = 0;
    int oka, okb;
    if (have_imm) {
        oka = ks_get_rm(s, in, &a);
        okb = 1;
        b = (uint64_t)imm;
    } else if (dir) {   /* op reg, r/m */
        oka = ks_get(s, in->reg, &a);
        okb = ks_get_rm(s, in, &b);
    } else {
        oka = ks_get_rm(s, in, &a);
        okb = ks_get(s, in->reg, &b);
    }
    int xor_self = op == 6 && !have_imm && in->mod == 3 && in->reg == in->rm;
    if (xor_self) {
        oka = okb = 1;
        a = b = 0;
    }
    uint64_t r = ks_alu(s, op, oka && okb, a, b, in->wide);
    if (op == 7 || op == 8)
        return KS_STEP_NEXT;   /* cmp, test: flags only */
    int ok = oka && okb && s->fop != KS_F_NONE;
    if (have_imm || !dir) {
        if (in->mod == 3)
            ks_set(s, in->rm, ok, r, in->wide);
        else
            ks_slot_store(s, in, ok, r);
    } else {
        ks_set(s, in->reg, ok, r, in->wide);
    }
    return KS_STEP_NEXT;
}

/* Moves: 0x89, 0x8b, 0xc7, 0xb8+r, 0x8d. */
static int ks_lp_mov(struct ks_lp_state *s, struct ks_x86_insn *in, int64_t imm)
{
    uint64_t v = 0;
    int ok;
    switch (in->op) {
    case 0x89:
        ok = ks_get(s, in->reg, &v);
        if (in->mod == 3)
            ks_set(s, in->rm, ok, v, in->wide);
        else
            ks_slot_store(s, in, ok, v);
        break;
    case 0x8b:
        ok = ks_get_rm(s, in, &v);
        ks_set(s, in->reg, ok, v, in->wide);
        break;
    case 0xc7:
        if (in->mod == 3)
            ks_set(s, in->rm, 1, (uint64_t)imm, in->wide);
        else
            ks_slot_store(s, in, 1, (uint64_t)imm);
        break;
    default:   /* lea */
        ks_set(s, in->reg, 0, 0, 1);
        break;
    }
    return KS_STEP_NEXT;
}

static int32_t ks_imm32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Jumps and direct calls at S->pc (opcode OP, N bytes of prefix and
 * opcode): KS_STEP_*, or -1 if OP is none of them. */
static int ks_lp_flow(struct ks_lp_run *run, struct ks_lp_state *s, const uint8_t *buf, int op,
                      int n, int avail)
{
    int rel8 = (op >= 0x70 && op <= 0x7f) || op == 0xeb;
    if (!rel8 && !((op >= 0x180 && op <= 0x18f) || op == 0xe9 || op == 0xe8))
        return -1;
    int dl = rel8 ? 1 : 4;
    if (n + dl > avail)
        return KS_STEP_UNKNOWN;
    uintptr_t next = s->pc + (uintptr_t)(n + dl);
    uintptr_t to = next + (uintptr_t)(intptr_t)(rel8 ? (int8_t)buf[n] : ks_imm32(buf + n));
    s->pc = next;
    if (op == 0xe8) {
        int t = ks_lp_transfer(run, to, 0);
        ks_after_call(s);
        return t;
    }
    if (op == 0xe9 || op == 0xeb) {
        int t = op == 0xe9 ? ks_lp_transfer(run, to, 0) : KS_STEP_NEXT;   /* a tail call? */
        if (t != KS_STEP_NEXT)
            return t;
        s->pc = to;
        return ks_visited(run, to) ? KS_STEP_END : KS_STEP_NEXT;
    }
    return ks_lp_branch(run, s, op & 0xf, to);
}

/* ModRM instructions the scan steps over without following their values:
 * what they write (their operands; rdx:rax for mul and div, rax for
 * cmpxchg) becomes
 * unknown, and so do the flags. Returns the immediate's size, -1 if OP is
 * not one of them. */
static int ks_lp_opaque(int op, int reg, int opsize)
{
    int imm = opsize ? 2 : 4;
    if (op < 0x40 && (op & 7) <= 3)
        return 0;   /* 8-bit ALU forms, adc, sbb */
    if ((op >= 0x140 && op <= 0x14f) || (op >= 0x190 && op <= 0x19f))
        return 0;   /* cmovcc, setcc */
    if ((op >= 0x110 && op <= 0x117) || (op >= 0x128 && op <= 0x12f) ||
        (op >= 0x150 && op <= 0x16f) || op == 0x17e || op == 0x17f || op >= 0x1d0)
        return 0;   /* SSE moves, arithmetic, conversions */
    if ((op >= 0x170 && op <= 0x173) || op == 0x1c2 || op == 0x1c6)
        return 1;   /* pshufd, the shifts by an immediate, cmpps, shufps */
    switch (op) {
    case 0x63: case 0x84: case 0x86: case 0x87: case 0x88: case 0x8a:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: case 0xfe:
    case 0x1af: case 0x1b1: case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: case 0x1c1:
        return 0;
    case 0x6b: case 0x80: case 0xc0: case 0xc1: case 0xc6:
        return 1;
    case 0x69:
        return imm;
    case 0x81: case 0xc7:
        return opsize ? 2 : -1;   /* 16-bit: not followed */
    case 0xf6:
        return (reg & 7) <= 1 ? 1 : 0;
    case 0xf7:
        return (reg & 7) <= 1 ? imm : 0;
    default:
        return -1;
    }
}

static void ks_lp_clobber(struct ks_lp_state *s, const struct ks_x86_insn *in)
{
    ks_set(s, in->reg, 0, 0, 1);
    if (in->mod == 3)
        ks_set(s, in->rm, 0, 0, 1);
    else
        ks_slot_store(s, in, 0, 0);
    if (((in->op == 0xf6 || in->op == 0xf7) && (in->reg & 7) >= 4) || in->op == 0x1b1) {
        ks_set(s, 0, 0, 0, 1);
        ks_set(s, 2, 0, 0, 1);
    }
    s->fop = KS_F_NONE;
}

/* The instructions with a ModRM operand at BUF[N]. */
static int ks_lp_modrm_op(struct ks_lp_run *run, struct ks_lp_state *s, struct ks_x86_insn *in,
                          int n, int avail)
{
    int op = in->op;
    int alu = op < 0x40 && (op & 7) <= 3 && (op & 1) && (op >> 3) != 2 && (op >> 3) != 3;
    int known = alu || op == 0x85 || op == 0x89 || op == 0x8b || op == 0x8d || op == 0xff ||
                op == 0x11f || ((op == 0x81 || op == 0xc7) && !in->opsize) || op == 0x83;
    int m = ks_x86_modrm(in, n, avail);
    int isz = op == 0x83 ? 1 : (op == 0x81 || op == 0xc7) && !in->opsize ? 4 : 0;
    if (!known && m >= 0)
        isz = ks_lp_opaque(op, in->reg, in->opsize);
    if (m < 0 || isz < 0 || m + isz > avail)
        return KS_STEP_UNKNOWN;
    int64_t imm = isz == 1 ? (int8_t)in->b[m] : isz == 4 ? ks_imm32(in->b + m) : 0;
    uintptr_t next = s->pc + (uintptr_t)(m + isz);
    uintptr_t slot = in->riprel ? next + (uintptr_t)(intptr_t)in->disp : 0;
    s->pc = next;
    if (!known) {
        ks_lp_clobber(s, in);
        return KS_STEP_NEXT;
    }
    if (op == 0x11f)
        return KS_STEP_NEXT;   /* nop r/m */
    if (op == 0xff) {
        int sub = in->reg & 7;
        if (sub == 2 || sub == 4) {   /* call, jmp indirect */
            int t = slot ? ks_lp_transfer(run, slot, 1) : KS_STEP_NEXT;
            ks_after_call(s);
            return sub == 4 && t == KS_STEP_NEXT ? KS_STEP_END : t;
        }
        if (sub == 6)
            s->nslot = 0;   /* push r/m */
        else
            ks_lp_clobber(s, in);   /* inc, dec */
        return sub <= 1 || sub == 6 ? KS_STEP_NEXT : KS_STEP_UNKNOWN;
    }
    if (op == 0x85)
        return ks_lp_alu(s, in, 8, 0, 0, 0);   /* test: and, flags only */
    if (op == 0x81 || op == 0x83)
        return ks_lp_alu(s, in, in->reg & 7, 0, 1, imm);
    if (alu)
        return ks_lp_alu(s, in, op >> 3, (op & 2) != 0, 0, 0);
    return ks_lp_mov(s, in, imm);
}

/* The accumulator forms: op al/eax/rax, imm (04/05 ... 3c/3d; a8/a9 test). */
static int ks_lp_acc(struct ks_lp_state *s, struct ks_x86_insn *in, int n, int avail)
{
    int byte = in->op == 0xa8 || (in->op != 0xa9 && (in->op & 7) == 4);
    int isz = byte ? 1 : in->opsize ? 2 : 4;
    if (n + isz > avail)
        return KS_STEP_UNKNOWN;
    s->pc += (uintptr_t)(n + isz);
    int op = in->op >= 0xa8 ? 8 : in->op >> 3;
    if (byte || isz == 2 || op == 2 || op == 3) {   /* not followed: al, ax, adc, sbb */
        ks_set(s, 0, 0, 0, 1);
        s->fop = KS_F_NONE;
        return KS_STEP_NEXT;
    }
    uint64_t a = 0;
    int ok = ks_get(s, 0, &a);
    uint64_t r = ks_alu(s, op, ok, a, (uint64_t)(int64_t)ks_imm32(in->b + n), in->wide);
    if (op != 7 && op != 8)
        ks_set(s, 0, ok && s->fop != KS_F_NONE, r, in->wide);
    return KS_STEP_NEXT;
}

/* Executes the instruction at S->pc; moves S->pc past it. */
static int ks_lp_step(struct ks_lp_run *run, struct ks_lp_state *s)
{
    uint8_t buf[16];
    size_t got = run->env->read(s->pc, buf, sizeof buf, run->env->arg);
    struct ks_x86_insn in = {.b = buf};
    int avail = (int)got;
    int n = ks_x86_opcode(&in, avail);
    if (n < 0)
        return KS_STEP_UNKNOWN;
    int op = in.op;
    if (op == 0xc3 || op == 0xc2 || op == 0xcc || op == 0xf4 || op == 0x10b)
        return KS_STEP_END;   /* ret, int3, hlt, ud2 */
    if (op == 0x90 || op == 0x11e) {   /* nop, endbr64 (f3 0f 1e fa) */
        n += op == 0x11e;
        s->pc += (uintptr_t)n;
        return n <= avail ? KS_STEP_NEXT : KS_STEP_UNKNOWN;
    }
    if (op >= 0x50 && op <= 0x5f) {   /* push, pop */
        if (op >= 0x58)
            ks_set(s, (op & 7) | (in.rex & 1 ? 8 : 0), 0, 0, 1);
        s->nslot = 0;
        s->pc += (uintptr_t)n;
        return KS_STEP_NEXT;
    }
    int f = ks_lp_flow(run, s, buf, op, n, avail);
    if (f >= 0)
        return f;
    if ((op < 0x40 && ((op & 7) == 4 || (op & 7) == 5)) || op == 0xa8 || op == 0xa9)
        return ks_lp_acc(s, &in, n, avail);
    if (op >= 0xb8 && op <= 0xbf) {   /* mov imm, r */
        int isz = in.wide ? 8 : 4;
        if (n + isz > avail)
            return KS_STEP_UNKNOWN;
        uint64_t v = 0;
        memcpy(&v, buf + n, (size_t)isz);
        ks_set(s, (op & 7) | (in.rex & 1 ? 8 : 0), 1, v, in.wide);
        s->pc += (uintptr_t)(n + isz);
        return KS_STEP_NEXT;
    }
    return ks_lp_modrm_op(run, s, &in, n, avail);
}

/* Follows one path from S to its end. */
static int ks_lp_path(struct ks_lp_run *run, struct ks_lp_state *s)
{
    while (run->budget-- > 0) {
        switch (ks_lp_step(run, s)) {
        case KS_STEP_NEXT: continue;
        case KS_STEP_END: return KS_LP_CLEAN;
        case KS_STEP_TERM: return KS_LP_TERMINATES;
        default: run->unknown = 1; return KS_LP_UNKNOWN;
        }
    }
    run->unknown = 1;
    return KS_LP_UNKNOWN;
}

int ks_lp_scan(const struct ks_lp_env *env, uintptr_t pad, int64_t selector)
{
    struct ks_lp_run run;
    memset(&run, 0, sizeof run);
    run.env = env;
    run.budget = KS_LP_BUDGET;
    struct ks_lp_state *s = &run.pend[0];
    s->pc = pad;
    ks_set(s, 2, 1, (uint64_t)selector, 1);   /* %rdx: the selector */
    run.npend = 1;
    ks_visited(&run, pad);
    while (run.npend > 0) {
        struct ks_lp_state cur = run.pend[--run.npend];
        int r = ks_lp_path(&run, &cur);
        if (r == KS_LP_TERMINATES)
            return r;
    }
    return run.unknown ? KS_LP_UNKNOWN : KS_LP_CLEAN;
}
