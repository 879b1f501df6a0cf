/* --flag-symbol NAME[=VALUE]: the program's own stop variable, written by the
 * injector itself through the kernel (process_vm_writev checks the
 * injector's attach access and that the page is writable). The shim writes
 * at no address a client names (docs/security.md). */
#ifndef KSI_FLAGVAR_H
#define KSI_FLAGVAR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client.h"
#include "symbolize.h"

struct ksi_flagvar {
    char name[256];           /* "" : none */
    struct ksi_symdef d;      /* where the symbol tables put it */
    uint64_t value;
    int written;              /* a write succeeded */
};

/* Parses SPEC (NAME[=VALUE]) and finds NAME in PID's symbol tables: a data
 * or thread-local symbol of 1, 2, 4 or 8 bytes. Returns an exit code, after
 * printing why not. */
int ksi_flagvar_find(pid_t pid, const char *spec, struct ksi_flagvar *v);

/* Writes V's value into thread TID's (id ID) copy of it: the variable
 * itself, or, thread-local, its copy in the block "tls" names. Returns
 * KSI_EXIT_OK, KSI_EXIT_REFUSED with WHY filled in (nothing was written), or
 * another exit code (the connection failed). */
int ksi_flagvar_write(struct ksi_client *c, pid_t tid, uint64_t id, struct ksi_flagvar *v,
                      char *why, size_t cap);

#endif
