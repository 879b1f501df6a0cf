/* The application side of bench_walk: a chain of DEPTH frames of a library
 * of its own (the walk's "program" frames; bench_walk's own code is the
 * shim's, since the shim's rooms are linked into it), whose deepest frame
 * takes its context and hands it to MEASURE. */
#include <ucontext.h>

__attribute__((visibility("default"), noinline)) int
kb_walk_chain(int depth, void (*measure)(ucontext_t *uc))
{
    if (depth <= 0) {
        ucontext_t uc;
        getcontext(&uc);
        measure(&uc);
    } else {
        kb_walk_chain(depth - 1, measure);
    }
    __asm__ volatile("" ::: "memory");   /* no tail call: the frame stays */
    return depth;
}
