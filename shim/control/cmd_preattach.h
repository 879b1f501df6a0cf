/* "end" and "status" for a pre-attach thread: one that was there before
 * the shim was attached (shim/core/attach.h, docs/attach.md). Internal to
 * cmd_end.c.
 *
 * - flag: accepted (the client writes the program's stop variable itself).
 * - cancel: glibc's pthread_cancel on its pthread_t, if its cancellation is
 *   enabled; refused with the reason if it is disabled.
 * - abort: only forced (the locks it took before the attach cannot be
 *   seen), as glibc's asynchronous cancellation.
 * - the main thread: flag only, as for a registered one. */
#ifndef KS_CMD_PREATTACH_H
#define KS_CMD_PREATTACH_H

#include <stdint.h>
#include <sys/types.h>

#include "shim/common/proto.h"

enum { KS_PRE_FLAG, KS_PRE_CANCEL, KS_PRE_ABORT };

/* 1 if a request for TID (with id ID) is for a pre-attach thread: noted at
 * the attach, no record of it in the registry, no id asked. */
int ks_preattach_target(pid_t tid, uint64_t id);
/* Unforced cancel: 0 if neither TID's start routine (from glibc's
 * struct pthread) nor a frame of its stack (a dump, as cancel's check
 * takes) lies in a language runtime's module (langrt.h); else EPERM with
 * WHY, and *RUNTIME = 1 if one does (0: the stack could not be taken, and
 * WHY says why: --force goes without the check). */
int ks_preattach_runtime(pid_t tid, char *why, size_t cap, int *runtime);
/* Answers "end" (MODE: KS_PRE_*) or "status" for such a thread. */
void ks_preattach_end(pid_t tid, int mode, int force, struct ks_out *out);
void ks_preattach_status(pid_t tid, struct ks_out *out);

#endif
