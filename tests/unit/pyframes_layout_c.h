#ifndef KS_PYFRAMES_LAYOUT_C_H
#define KS_PYFRAMES_LAYOUT_C_H
#include "shim/control/pyframes.h"
#ifdef __cplusplus
extern "C" {
#endif
int ks_pyl_minor_of_headers(void);
const char *ks_pyl_version_of_headers(void);
void ks_pyl_from_headers(struct ks_pyl *l);
unsigned ks_pyl_state_bits(unsigned kind, unsigned compact, unsigned ascii);
#ifdef __cplusplus
}
#endif
#endif
