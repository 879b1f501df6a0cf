/* Who may do what over the control socket: exactly what the kernel's ptrace
 * rules give the client over this process at the moment it asks
 * (docs/security.md).
 *
 * The shim does not re-implement those rules (uid and gid sets, dumpable,
 * Yama's ptrace_scope, capabilities, user namespaces, LSMs): it asks the
 * client to prove what the kernel let it do. A "challenge" names a fresh
 * generation of two secrets held in a page of the shim's own:
 *  - the read secret is the page's name in /proc/PID/maps (a memfd named
 *    "killshim-proof-GEN-HEX"): whoever the kernel lets open maps
 *    (PTRACE_MODE_READ) can quote it;
 *  - the attach secret is the page's content: only a client the kernel lets
 *    read this process's memory (process_vm_readv or /proc/PID/mem,
 *    PTRACE_MODE_ATTACH, what gdb -p needs) can quote it.
 * A request then carries "proof=GEN-HEX". A generation is good for
 * KS_PROOF_VALID_MS after it was made; a new one is made when the newest is
 * older than half that, and the two newest are honoured, so clients never
 * race each other.
 *
 * The secrets (and the lock that guards them) live in a page a fork child
 * gets zero-filled (MADV_WIPEONFORK), and the named pages are not inherited
 * (MADV_DONTFORK): a child that changed user can never hand out its
 * parent's secrets. Nothing here writes to the program's memory, takes one
 * of its fds, or runs on its threads. */
#ifndef KS_ACCESS_H
#define KS_ACCESS_H

#include <stddef.h>

#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KS_PROOF_VALID_MS 1000

/* What a request needs (struct ks_command.access) and what a proof shows. */
enum ks_access {
    KS_ACCESS_NONE = 0,     /* hello, help, challenge, quit */
    KS_ACCESS_READ = 1,     /* list, stack, status, tls: PTRACE_MODE_READ */
    KS_ACCESS_ATTACH = 2,   /* end: PTRACE_MODE_ATTACH */
};

/* 0 if REQ's proof shows at least NEED, else EACCES with WHY filled in (for
 * an "err code=permission" line). VERB names the request in WHY. */
int ks_access_check(const struct ks_msg *req, enum ks_access need, const char *verb, char *why,
                    size_t cap);

#ifdef __cplusplus
}
#endif
#endif
