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

/* Slots kept per module: the terminate ones first, then those of functions
 * that throw or resume, then those that do not return (a sanitizer's
 * report functions: a program built with UBSan calls some twenty). */
#define KS_GOTSYM_MAX 40

struct ks_gotsym {
    uintptr_t base;                 /* the module's load bias */
    int n;
    uint32_t off[KS_GOTSYM_MAX];    /* slot - base */
    uint8_t kind[KS_GOTSYM_MAX];    /* enum ks_lp_target */
};

/* Fills OUT for the object INFO describes. */
void ks_gotsym_collect(const struct dl_phdr_info *info, struct ks_gotsym *out);

/* The kind of the function whose GOT slot is SLOT: enum ks_lp_target
 * (KS_LP_OTHER if G does not name it). */
int ks_gotsym_kind(const struct ks_gotsym *g, uintptr_t slot);

/* The kind of a function NAME names: enum ks_lp_target (KS_LP_OTHER: none
 * of those). */
int ks_gotsym_kind_of_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif
