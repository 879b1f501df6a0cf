/* See prewalk.h. */
#include "prewalk.h"

#include <string.h>

#include "shim/core/asfmt.h"
#include "shim/core/ks.h"
#include "langrt.h"
#include "lpad.h"
#include "lsda.h"
#include "padcheck.h"
#include "shim/core/registry.h"
#include "safepoint.h"
#include "shim/unwind/unwind.h"

#define KS_WALK_MAX_FRAMES 1024

void ks_prewalk_init(void *libgcc)
{
    ks_padcheck_init(libgcc);
}

void ks_sb_where(struct ks_sb *b, uintptr_t addr)
{
    struct ks_pc_info pi;
    if (ks_safepoint_lookup(addr, &pi) == KS_MOD_NONE) {
        ks_sb_hex(b, addr);
        return;
    }
    ks_sb_str(b, pi.name);
    ks_sb_ch(b, '+');
    ks_sb_hex(b, addr - pi.bias);
}

static void ks_walk_set(struct ks_walk *w, int verdict, uintptr_t where, const char *what,
                        const char *tail)
{
    struct ks_sb b;
    ks_sb_init(&b, w->reason, sizeof w->reason);
    w->verdict = verdict;
    w->where = where;
    ks_sb_str(&b, what);
    if (where) {
        if (*what)
            ks_sb_ch(&b, ' ');
        ks_sb_where(&b, where);
    }
    ks_sb_str(&b, tail);
}

/* A frame of language runtime RT (langrt.h): refused unless forced. */
static void ks_walk_langrt(struct ks_walk *w, uintptr_t ip, int rt)
{
    struct ks_sb b;
    ks_sb_init(&b, w->reason, sizeof w->reason);
    w->verdict = KS_WALK_REFUSED;
    w->where = ip;
    ks_sb_str(&b, "runs in ");
    ks_sb_str(&b, ks_langrt_name(rt));
    ks_sb_str(&b, " at ");
    ks_sb_where(&b, ip);
    ks_sb_str(&b, ": leaving would strand the runtime's state for it (--force leaves)");
}

/* Where ks_prewalk is: the cursor on the current frame and what the walk
 * knows of it. */
struct ks_pw {
    unw_cursor_t *cur;        /* in the caller's work block (1 KB): off the stack */
    int exact;                /* the frame's IP is an interrupted pc */
    int flags;
    int top;                  /* no application frame seen yet */
    uintptr_t start;          /* the shim's thread start: the walk's end */
    unw_word_t ip, sp;
    /* The shallowest frame inside a call that cannot throw (see
     * ks_walk_lsda): the walk is TRANSIENT unless a deeper frame refuses. */
    uintptr_t nothrow_ip, nothrow_sp;
    struct ks_pad_work *work;
};

/* Evaluates the LSDA of P's frame. Returns 0 or sets a verdict in W. FIRST:
 * the frame it would leave from. */
static int ks_walk_lsda(struct ks_walk *w, struct ks_pw *p, const unw_proc_info_t *pi, int first)
{
    uintptr_t ip = p->ip;
    struct ks_lsda_out out;
    int pad;
    int v = ks_frame_verdict(pi, p->exact ? ip : ip - 1, &out, &pad, p->work);
    if (v < 0) {
        ks_walk_set(w, KS_WALK_REFUSED, ip, "exception table outside any module for", "");
        return -1;
    }
    if (pad == KS_LP_UNKNOWN) {
        ks_walk_set(w, KS_WALK_REFUSED, ip, "cannot tell if the landing pad for",
                    " calls std::terminate (code the check does not follow)");
        return -1;
    }
    switch (v) {
    case KS_LSDA_NOTHING:
        return 0;
    case KS_LSDA_CLEANUP:
    case KS_LSDA_RETHROWS:
        if (w->ncleanup < KS_WALK_CLEANUPS)
            w->cleanup[w->ncleanup++] = ip;
        return 0;
    case KS_LSDA_CATCH_ALL:
        ks_walk_set(w, KS_WALK_REFUSED, ip, "catch (...) in",
                    " would catch the unwind (the process aborts unless it rethrows)");
        return -1;
    case KS_LSDA_TERMINATE:
        if (out.nothrow_site) {
            /* The frame is in a call its compiler knew cannot throw (memcpy),
             * or in noexcept code inlined into it: std::terminate from this
             * IP only, wherever the frame is in the stack. Once that call
             * returned (the thread's SP back at this frame's), its next call
             * site may let the unwind through: not now rather than never. A
             * deeper frame may still refuse, so the walk goes on. */
            if (!p->nothrow_ip) {
                p->nothrow_ip = ip;
                p->nothrow_sp = p->sp;
            }
            return 0;
        }
        /* A noexcept function. FIRST: the thread is inside it and will
         * return from it (a destructor, a noexcept helper): not now rather
         * than never. Deeper: every way out of the frames above crosses it. */
        if (first) {
            ks_walk_set(w, KS_WALK_TRANSIENT, ip, "inside noexcept code at",
                        "; leaving there would call std::terminate, waits for it to return");
            w->obstacle = KS_OBST_NOEXCEPT;
        }
        else
            ks_walk_set(w, KS_WALK_REFUSED, ip, "would call std::terminate:",
                        pad == KS_LP_TERMINATES
                            ? " is noexcept (its handler for this call calls it)"
                            : " is noexcept (no handler entry for this call)");
        return -1;
    default:
        ks_walk_set(w, KS_WALK_REFUSED, ip, "unreadable exception table in", "");
        return -1;
    }
}

/* An application (or C++ runtime) frame, PI its procedure (PIRC: how
 * get_proc_info went). Returns 1 once W holds the verdict, 0 to step on. */
static int ks_prewalk_app(struct ks_walk *w, struct ks_pw *p, const unw_proc_info_t *pi, int pirc)
{
    if (pirc != 0 || pi->format != UNW_INFO_FORMAT_TABLE) {
        ks_walk_set(w, KS_WALK_REFUSED, p->ip, "no unwind information for", "");
        return 1;
    }
    int first = p->top;
    if (p->top) {
        p->top = 0;
        w->exit_ip = p->ip;
    }
    if (!pi->lsda || ks_walk_lsda(w, p, pi, first) == 0)
        return 0;
    /* Not before that function returned: its CFA is the caller's SP. */
    unw_word_t csp = 0;
    if (w->verdict == KS_WALK_TRANSIENT && ks_unw.step(p->cur) > 0 &&
        ks_unw.get_reg(p->cur, UNW_REG_SP, &csp) == 0)
        w->transient_sp = csp;
    return 1;
}

/* The frame at P's cursor. Returns 1 once W holds the verdict, 0 to step on. */
static int ks_prewalk_frame(struct ks_walk *w, struct ks_pw *p)
{
    ks_unw.get_reg(p->cur, UNW_REG_IP, &p->ip);
    ks_unw.get_reg(p->cur, UNW_REG_SP, &p->sp);
    if (ks_unw.is_signal_frame(p->cur) > 0) {
        ks_walk_set(w, KS_WALK_TRANSIENT, 0, "running a signal handler", "");
        w->obstacle = KS_OBST_SIGNAL;
        w->transient_sp = p->sp;
        return 1;
    }
    struct ks_pc_info mod;
    int kind = ks_safepoint_lookup(p->exact ? p->ip : p->ip - 1, &mod);
    int rt = kind == KS_MOD_APP && !(p->flags & KS_WALK_LANGRT_OK) ? ks_langrt_of_name(mod.name) : 0;
    if (rt) {
        ks_walk_langrt(w, p->ip, rt);
        return 1;
    }
    unw_proc_info_t pi;
    memset(&pi, 0, sizeof pi);
    int pirc = ks_unw.get_proc_info(p->cur, &pi);
    if (kind == KS_MOD_SHIM && pirc == 0 && pi.start_ip == p->start) {
        w->verdict = KS_WALK_OK;
        return 1;
    }
    if (kind == KS_MOD_SHIM && p->top && (p->flags & KS_WALK_SKIP_SHIM_TOP))
        return 0;   /* the exit path's own frames */
    if (kind == KS_MOD_APP || kind == KS_MOD_CXXRT)
        return ks_prewalk_app(w, p, &pi, pirc);
    if (p->top && (p->flags & KS_WALK_RUNTIME_TOP))
        return 0;
    ks_walk_set(w, KS_WALK_TRANSIENT, p->ip, "would unwind through", "");
    w->obstacle = KS_OBST_RUNTIME;
    w->transient_sp = p->sp;
    return 1;
}

/* The walk ended with W's verdict: a frame inside a call that cannot throw
 * makes it TRANSIENT, unless it refused (a transient obstacle deeper is met
 * again once that call returned). */
static void ks_walk_nothrow(struct ks_walk *w, const struct ks_pw *p)
{
    if (!p->nothrow_ip || w->verdict == KS_WALK_REFUSED)
        return;
    ks_walk_set(w, KS_WALK_TRANSIENT, p->nothrow_ip, "in a call that cannot throw, from",
                " (leaving would call std::terminate); waits for it to return");
    w->obstacle = KS_OBST_NOTHROW_CALL;
    w->transient_sp = p->nothrow_sp;
}

void ks_prewalk(ucontext_t *ctx, int exact, int flags, struct ks_walk *w,
                struct ks_pad_work *work)
{
    memset(w, 0, sizeof *w);
    struct ks_pw p = {.exact = exact, .flags = flags, .top = 1, .work = work,
                      .cur = &work->cursor};
    if (!ks_unw_ready() ||
        ks_unw.init_local2(p.cur, (unw_context_t *)ctx, exact ? UNW_INIT_SIGNAL_FRAME : 0) != 0) {
        ks_walk_set(w, KS_WALK_REFUSED, 0, "cannot start unwinding", "");
        return;
    }
    p.start = ks_thread_start_addr();
    for (int n = 0; n < KS_WALK_MAX_FRAMES; n++, p.exact = 0) {
        w->frames = n + 1;
        if (ks_prewalk_frame(w, &p)) {
            ks_walk_nothrow(w, &p);
            return;
        }
        int rc = ks_unw.step(p.cur);
        if (rc == 0) {
            ks_walk_set(w, KS_WALK_REFUSED, p.ip, "the stack ends at", " before the thread's start");
            return;
        }
        if (rc < 0) {
            ks_walk_set(w, KS_WALK_REFUSED, p.ip, "cannot unwind past", "");
            return;
        }
    }
    ks_walk_set(w, KS_WALK_REFUSED, 0, "stack deeper than 1024 frames", "");
}

/* A running thread caught inside a function its caller's compiler knew
 * cannot throw, in glibc (memcpy, strlen: declared __THROW, which glibc
 * never does for a cancellation point), the loader (__tls_get_addr), the
 * vDSO or a sanitizer's runtime (its memcpy, then libc's): the call returns
 * before the thread reaches any cancellation point, so the first caller's
 * missing handler entry for it is no std::terminate on the cancellation's
 * way. */
static int ks_frames_callee_returns(int kind)
{
    return kind == KS_MOD_LIBC || kind == KS_MOD_LOADER || kind == KS_MOD_VDSO ||
           kind == KS_MOD_SANRT;
}

/* One frame of a cancellation unwind (KIND: its module's). NOTHROW_OK: a
 * call site without a handler entry is the callee's, which returns first
 * (ks_frames_callee_returns). Returns 0 to go on, or sets W. */
static int ks_frames_one(struct ks_walk *w, uintptr_t lookup, const unw_proc_info_t *pi, int kind,
                         int nothrow_ok, struct ks_pad_work *work)
{
    if (!pi->lsda)
        return 0;
    struct ks_lsda_out out;
    int pad;
    int v = ks_frame_verdict(pi, lookup, &out, &pad, work);
    if (pad == KS_LP_UNKNOWN) {
        ks_walk_set(w, KS_WALK_UNKNOWN, lookup, "cannot check: the landing pad for",
                    " runs code this shim does not follow (does it call std::terminate?)");
        return -1;
    }
    switch (v) {
    case KS_LSDA_NOTHING:
        return 0;
    case KS_LSDA_CLEANUP:
    case KS_LSDA_RETHROWS:
        if (kind == KS_MOD_APP && w->napp_cleanup < KS_WALK_APP_CLEANUPS) {
            w->app_cleanup_lo[w->napp_cleanup] = pi->start_ip;
            w->app_cleanup_hi[w->napp_cleanup++] = pi->end_ip;
        }
        if (w->ncleanup < KS_WALK_CLEANUPS)
            w->cleanup[w->ncleanup++] = lookup;
        return 0;
    case KS_LSDA_CATCH_ALL:
        ks_walk_set(w, KS_WALK_REFUSED, lookup, "",
                    " has a catch (...) that would catch the unwind (glibc aborts the process "
                    "unless the handler rethrows)");
        return -1;
    case KS_LSDA_TERMINATE:
        if (nothrow_ok && out.nothrow_site)
            return 0;
        ks_walk_set(w, KS_WALK_REFUSED, lookup, "",
                    pad == KS_LP_TERMINATES
                        ? " is noexcept: its handler for this call would call std::terminate"
                        : " is noexcept: unwinding through it would call std::terminate");
        return -1;
    case KS_LSDA_UNSUPPORTED:
        ks_walk_set(w, KS_WALK_UNKNOWN, lookup, "cannot check: the exception table of",
                    " uses an encoding this shim does not read");
        return -1;
    default:
        ks_walk_set(w, KS_WALK_REFUSED, lookup, "", " has an unreadable exception table");
        return -1;
    }
}

void ks_prewalk_frames(const uintptr_t *ips, const uint64_t *exact, int n, int flags,
                       struct ks_walk *w, struct ks_pad_work *work)
{
    memset(w, 0, sizeof *w);
    if (!ks_unw_ready()) {
        ks_walk_set(w, KS_WALK_UNKNOWN, 0, "cannot check: libunwind is not loaded in this "
                    "process (see its stderr)", "");
        return;
    }
    uintptr_t start = ks_thread_start_addr();
    int below_returns = 1;   /* frames 0..i-1 all return before a cancellation point */
    for (int i = 0; i < n; i++) {
        int ex = (exact[i / 64] >> (i % 64)) & 1;
        uintptr_t lookup = ex ? ips[i] : ips[i] - 1;
        unw_proc_info_t pi;
        memset(&pi, 0, sizeof pi);
        w->frames = i + 1;
        /* No FDE: libgcc stops there too, and glibc then ends the thread
         * without the cleanups of the frames above, the shim's exit path
         * included. (Looked up by address, pi.format is not filled in.) */
        if (ks_unw.get_proc_info_by_ip(ks_unw.as, lookup, &pi, NULL) != 0) {
            ks_walk_set(w, KS_WALK_REFUSED, lookup, "",
                        " has no unwind information: the unwind would stop there");
            return;
        }
        int kind = ks_safepoint_lookup(lookup, &(struct ks_pc_info){0});
        if (kind == KS_MOD_SHIM && pi.start_ip == start) {
            w->verdict = KS_WALK_OK;
            return;
        }
        int skip_top = flags & KS_FRAMES_SKIP_TOP;
        if ((i > 0 || !skip_top) &&
            ks_frames_one(w, lookup, &pi, kind, skip_top && below_returns, work) != 0)
            return;
        below_returns = below_returns && ks_frames_callee_returns(kind);
    }
    ks_walk_set(w, KS_WALK_UNKNOWN, 0, "cannot check: the stack taken ends before the thread's "
                "start (deeper than the frames kept, or a frame the unwinder cannot step past)",
                "");
}
