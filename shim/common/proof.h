/* The client's side of the access proofs (access.h): what killshim-inject
 * and the tests send as proof=. The kernel decides: the read secret is read
 * from /proc/PID/maps (PTRACE_MODE_READ), the attach secret from the
 * process's memory with process_vm_readv (PTRACE_MODE_ATTACH). */
#ifndef KS_PROOF_H
#define KS_PROOF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ks_proof {
    uint64_t gen;
    int level;             /* enum ks_access: the best it could prove */
    char text[64];         /* the value of proof=: "GEN-HEX" */
    int read_errno;        /* 0, or why /proc/PID/maps gave no read secret */
    int attach_errno;      /* 0, or why the memory gave no attach secret */
};

/* Proves what the kernel lets the caller do to PID, for generation GEN (the
 * gen= of the answer to "challenge"). Fills *P; returns P->level (0: none,
 * the errnos say why). */
int ks_proof_make(pid_t pid, uint64_t gen, struct ks_proof *p);
/* The same, and if MAPS is not NULL and the map could be read, the map
 * text it was proven from in *MAPS (malloc'd, NUL-terminated, *MAPS_LEN
 * bytes; the caller frees it): a caller that needs the map anyway (the
 * listing's symbolizer) reads it once. *MAPS is NULL otherwise. */
int ks_proof_make_maps(pid_t pid, uint64_t gen, struct ks_proof *p, char **maps,
                       size_t *maps_len);

/* /proc/PID/maps whole, in a malloc'd NUL-terminated buffer of *LEN bytes
 * (read in 64 KiB calls). NULL and errno if it cannot be opened or read. */
char *ks_maps_read(pid_t pid, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
