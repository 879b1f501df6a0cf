/* What a forced unwind (pthread_exit, cancellation, the abort) does in one
 * frame, read from the frame's LSDA (.gcc_except_table, the GCC/Itanium C++
 * ABI format that __gxx_personality_v0 and __gcc_personality_v0 read).
 *
 * A pure function over bytes: every read is bounds-checked against LEN, so a
 * malformed table yields KS_LSDA_MALFORMED, never a read outside it. The one
 * reach outside is the catch-type test, made through the caller's callback.
 * It is fuzzed (tests/unit/lsda_test.cc). */
#ifndef KS_LSDA_H
#define KS_LSDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ks_lsda_verdict {
    KS_LSDA_NOTHING = 0,   /* no cleanup and no handler at this IP */
    KS_LSDA_CLEANUP,       /* a landing pad runs cleanups (destructors, cleanup attrs) */
    KS_LSDA_RETHROWS,      /* catch (abi::__forced_unwind&): the idiom that rethrows */
    KS_LSDA_CATCH_ALL,     /* catch (...): the unwind is caught; unless the handler
                              rethrows, glibc aborts the process */
    KS_LSDA_TERMINATE,     /* no call-site entry (a noexcept function, or a call the
                              compiler knew could not throw) or an empty throw() spec:
                              the personality calls std::terminate */
    KS_LSDA_UNSUPPORTED,   /* an encoding this parser does not know (textrel, datarel) */
    KS_LSDA_MALFORMED,
};

struct ks_lsda_in {
    const uint8_t *buf;    /* the LSDA */
    size_t len;            /* readable bytes from BUF */
    uint64_t addr;         /* the address BUF has in the process (for pcrel) */
    uint64_t func_start;   /* the procedure's start (LPStart default, funcrel base) */
    uint64_t ip;           /* the IP looked up: return address - 1 at a call site,
                              the exact IP in a frame interrupted by a signal */
    int c_personality;     /* __gcc_personality_v0: no entry means no action,
                              not std::terminate */
    /* 1 if the catch clause's type is abi::__forced_unwind. PTR is the
     * decoded entry; if INDIRECT, PTR is the address of the type pointer. */
    int (*is_forced_unwind)(uint64_t ptr, int indirect, void *arg);
    void *arg;
};

struct ks_lsda_out {
    int verdict;           /* enum ks_lsda_verdict */
    uint64_t landing_pad;  /* 0 if none */
    /* TERMINATE at this IP only: the call-site table has entries but none
     * covers IP, a call the compiler knew cannot throw (memcpy) or noexcept
     * code inlined here. The function's other call sites let an unwind
     * through. 0 for an empty table (GCC's noexcept function: terminate
     * anywhere in it) and an empty throw() specification. */
    int nothrow_site;
    /* The selector the personality passes the landing pad (%rdx): 0 for a
     * cleanup, the catch clause's filter for RETHROWS and CATCH_ALL. The
     * pad's code decides what runs (lpad.h): GCC's cleanup in a noexcept
     * function that holds a try block calls std::terminate. */
    int64_t selector;
};

/* Evaluates IN; returns OUT->verdict. */
int ks_lsda_eval(const struct ks_lsda_in *in, struct ks_lsda_out *out);

/* A short name for VERDICT. */
const char *ks_lsda_verdict_name(int verdict);

#ifdef __cplusplus
}
#endif
#endif
