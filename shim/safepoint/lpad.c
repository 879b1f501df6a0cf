/* See lpad.h. Follows a pad's paths. The instructions a dispatch on the
 * selector uses (moves, also through frame slots, immediates, add, sub, cmp,
 * test, xor) are interpreted (lpad_state.h); the others inlined destructors
 * use (SSE, movzx, shifts, lock xadd...) are stepped over, what they write
 * becoming unknown; a call clobbers the caller-saved registers. A path ends
 * at a return, a call or jump to a function that does not return, an
 * indirect jump, or a branch target already followed. An instruction it
 * cannot size ends it as KS_LP_UNKNOWN: guessing a length could turn data
 * into a call. */
#include "lpad.h"

#include <string.h>

#include "lpad_state.h"
#include "x86_decode.h"

#define KS_LP_BUDGET 4096   /* instructions over all paths */

static int ks_visited(struct ks_lp_work *run, uintptr_t pc)
{
    for (int i = 0; i < run->nvisited; i++)
        if (run->visited[i] == pc)
            return 1;
    if (run->nvisited < KS_LP_VISITED)
        run->visited[run->nvisited++] = pc;
    return 0;
}

enum { KS_STEP_NEXT, KS_STEP_END, KS_STEP_TERM, KS_STEP_UNKNOWN };

/* A call (returning to RET) or a tail jump (RET 0) to ADDR (SLOT: through
 * a pointer at ADDR). A rethrow from a call goes on in this frame; from a
 * tail jump, in its caller, which the walk checks itself. */
static int ks_lp_transfer(struct ks_lp_work *run, uintptr_t addr, int slot, uintptr_t ret)
{
    int t = run->env->target(addr, slot, run->env->arg);
    if (t == KS_LP_UNWINDS && ret) {
        int r = run->env->unwinds(ret, run->env->arg);
        return r == KS_LP_TERMINATES ? KS_STEP_TERM : r == KS_LP_UNKNOWN ? KS_STEP_UNKNOWN
                                                                         : KS_STEP_END;
    }
    return t == KS_LP_TERMINATE ? KS_STEP_TERM : t == KS_LP_OTHER ? KS_STEP_NEXT : KS_STEP_END;
}

/* A conditional branch to TO: follows the side the flags decide, both if
 * they do not. */
static int ks_lp_branch(struct ks_lp_work *run, struct ks_lp_state *s, int cc, uintptr_t to)
{
    int c = ks_lps_cond(s, cc);
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

static int32_t ks_imm32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Jumps and direct calls at S->pc (opcode OP, N bytes of prefix and
 * opcode): KS_STEP_*, or -1 if OP is none of them. */
static int ks_lp_flow(struct ks_lp_work *run, struct ks_lp_state *s, const uint8_t *buf, int op,
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
        int t = ks_lp_transfer(run, to, 0, next);
        ks_lps_after_call(s);
        return t;
    }
    if (op == 0xe9 || op == 0xeb) {
        int t = op == 0xe9 ? ks_lp_transfer(run, to, 0, 0) : KS_STEP_NEXT;   /* a tail call? */
        if (t != KS_STEP_NEXT)
            return t;
        s->pc = to;
        return ks_visited(run, to) ? KS_STEP_END : KS_STEP_NEXT;
    }
    return ks_lp_branch(run, s, op & 0xf, to);
}

/* The instructions with a ModRM operand at BUF[N]. */
static int ks_lp_modrm_op(struct ks_lp_work *run, struct ks_lp_state *s, struct ks_x86_insn *in,
                          int n, int avail)
{
    int op = in->op;
    int alu = op < 0x40 && (op & 7) <= 3 && (op & 1) && (op >> 3) != 2 && (op >> 3) != 3;
    int known = alu || op == 0x85 || op == 0x89 || op == 0x8b || op == 0x8d || op == 0xff ||
                op == 0x11f || ((op == 0x81 || op == 0xc7) && !in->opsize) || op == 0x83;
    int m = ks_x86_modrm(in, n, avail);
    int isz = op == 0x83 ? 1 : (op == 0x81 || op == 0xc7) && !in->opsize ? 4 : 0;
    if (!known && m >= 0)
        isz = ks_lps_opaque(op, in->reg, in->opsize);
    if (m < 0 || isz < 0 || m + isz > avail)
        return KS_STEP_UNKNOWN;
    int64_t imm = isz == 1 ? (int8_t)in->b[m] : isz == 4 ? ks_imm32(in->b + m) : 0;
    uintptr_t next = s->pc + (uintptr_t)(m + isz);
    uintptr_t slot = in->riprel ? next + (uintptr_t)(intptr_t)in->disp : 0;
    s->pc = next;
    if (!known) {
        ks_lps_clobber(s, in);
        return KS_STEP_NEXT;
    }
    if (op == 0x11f)
        return KS_STEP_NEXT;   /* nop r/m */
    if (op == 0xff) {
        int sub = in->reg & 7;
        if (sub == 2 || sub == 4) {   /* call, jmp indirect */
            int t = slot ? ks_lp_transfer(run, slot, 1, sub == 2 ? next : 0) : KS_STEP_NEXT;
            ks_lps_after_call(s);
            return sub == 4 && t == KS_STEP_NEXT ? KS_STEP_END : t;
        }
        if (sub == 6)
            s->nslot = 0;   /* push r/m */
        else
            ks_lps_clobber(s, in);   /* inc, dec */
        return sub <= 1 || sub == 6 ? KS_STEP_NEXT : KS_STEP_UNKNOWN;
    }
    if (op == 0x85)
        ks_lps_alu(s, in, 8, 0, 0, 0);   /* test: and, flags only */
    else if (op == 0x81 || op == 0x83)
        ks_lps_alu(s, in, in->reg & 7, 0, 1, imm);
    else if (alu)
        ks_lps_alu(s, in, op >> 3, (op & 2) != 0, 0, 0);
    else
        ks_lps_mov(s, in, imm);
    return KS_STEP_NEXT;
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
        ks_lps_set(s, 0, 0, 0, 1);
        s->fop = KS_F_NONE;
        return KS_STEP_NEXT;
    }
    uint64_t a = 0;
    int ok = ks_lps_get(s, 0, &a);
    uint64_t r = ks_lps_flags(s, op, ok, a, (uint64_t)(int64_t)ks_imm32(in->b + n), in->wide);
    if (op != 7 && op != 8)
        ks_lps_set(s, 0, ok && s->fop != KS_F_NONE, r, in->wide);
    return KS_STEP_NEXT;
}

/* Executes the instruction at S->pc; moves S->pc past it. */
static int ks_lp_step(struct ks_lp_work *run, struct ks_lp_state *s)
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
            ks_lps_set(s, (op & 7) | (in.rex & 1 ? 8 : 0), 0, 0, 1);
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
        ks_lps_set(s, (op & 7) | (in.rex & 1 ? 8 : 0), 1, v, in.wide);
        s->pc += (uintptr_t)(n + isz);
        return KS_STEP_NEXT;
    }
    return ks_lp_modrm_op(run, s, &in, n, avail);
}

/* Follows one path from S to its end. */
static int ks_lp_path(struct ks_lp_work *run, struct ks_lp_state *s)
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

int ks_lp_scan(const struct ks_lp_env *env, uintptr_t pad, int64_t selector,
               struct ks_lp_work *run)
{
    run->env = env;
    run->npend = 0;
    run->nvisited = 0;
    run->budget = KS_LP_BUDGET;
    run->unknown = 0;
    struct ks_lp_state *s = &run->pend[0];
    memset(s, 0, sizeof *s);
    s->pc = pad;
    ks_lps_set(s, 2, 1, (uint64_t)selector, 1);   /* %rdx: the selector */
    run->npend = 1;
    ks_visited(run, pad);
    while (run->npend > 0) {
        run->cur = run->pend[--run->npend];   /* in WORK too: off the stack */
        int r = ks_lp_path(run, &run->cur);
        if (r == KS_LP_TERMINATES)
            return r;
    }
    return run->unknown ? KS_LP_UNKNOWN : KS_LP_CLEAN;
}
