/* One CPython version's offsets, from its own headers (pyframes_layout_c.c,
 * compiled once per version). */
#ifndef KS_PYFRAMES_LAYOUT_C_H
#define KS_PYFRAMES_LAYOUT_C_H
#include "shim/control/pyframes.h"
#ifdef __cplusplus
extern "C" {
#endif
struct ks_pyl_probe {
    const char *version;                  /* PY_VERSION of the headers */
    void (*fill)(struct ks_pyl *l);       /* the row the headers give */
    unsigned (*state_bits)(unsigned kind, unsigned compact, unsigned ascii);
    /* 3.13: the shim's copy of _Py_DebugOffsets against the header's (the
     * first field that differs, or NULL); NULL for other versions. */
    const char *(*dbg)(void);
};
extern const struct ks_pyl_probe ks_pyl_probe_311, ks_pyl_probe_39, ks_pyl_probe_313;
#ifdef __cplusplus
}
#endif
#endif
