/* killshim-inject --stack: what stack.c reads from the reply and
 * stack_print.c prints, as text or JSON. */
#ifndef KSI_STACK_H
#define KSI_STACK_H

#include <stddef.h>

#include "deadlock.h"
#include "injector.h"
#include "stack_py.h"
#include "symbolize.h"
#include "textline.h"

struct ksi_frame {
    unsigned long long pc;
    int exact;                  /* the interrupted instruction, not a return address */
    const struct ksi_symbol *sym;   /* NULL: unknown */
};

struct ksi_thr {
    long tid, owner;
    char name[64], role[16], state[4], via[8], why[32], call[32], wait[16];
    int selected, has_syscall, has_owner, cut, nframes;
    long sc_nr;
    unsigned long long sargs[6], ssp, spc, wait_obj;
    struct ksi_frame *frames;
    struct ksi_py *py;          /* Python frames, NULL if CPython does not know it */
};

struct ksi_dump {
    struct ksi_thr *v;
    size_t n, cap, frames;
    int oom;
    char py_why[200];   /* CPython present but its frames not read: why */
    int cut;   /* over KSI_MAX_THREADS or KSI_MAX_FRAMES: the rest was dropped */
};

/* Prints the dump D with its wait-for graph G; US: the shim's time. */
void ksi_stack_print_text(const struct ksi_opts *o, const struct ksi_dump *d,
                          const struct ksi_graph *g, long long us);
void ksi_stack_print_json(const struct ksi_opts *o, const struct ksi_dump *d,
                          const struct ksi_graph *g, long long us);

/* Frame I of a thread as the text dump shows it, ended by a newline, into
 * L (overwritten): the bytes of printf("  #%-2d 0x%016llx", ...) and the
 * symbol, module and file:line parts (stack_print.c). */
void ksi_frame_text(int i, const struct ksi_frame *f, struct ksi_line *l);

#endif
