/* The GOT slots through which a module calls the functions a landing pad
 * scan must recognise (lpad.h): std::terminate and friends, _Unwind_Resume,
 * __cxa_throw. A PLT stub jumps through its slot; the slot's relocation
 * names the function, whether or not lazy binding has filled it yet. Read
 * from the module's PT_DYNAMIC when the module table is built (not in
 * signal context). */
#ifndef KS_GOTSYM_H
#define KS_GOTSYM_H

#include <link.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KS_GOTSYM_MAX 6

struct ks_gotsym {
    int n;
    uintptr_t slot[KS_GOTSYM_MAX];
    int kind[KS_GOTSYM_MAX];        /* enum ks_lp_target */
};

/* Fills OUT for the object INFO describes. */
void ks_gotsym_collect(const struct dl_phdr_info *info, struct ks_gotsym *out);

/* The kind of a function NAME names: enum ks_lp_target (KS_LP_OTHER: none
 * of those). */
int ks_gotsym_kind_of_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif
