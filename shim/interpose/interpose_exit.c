/* _exit and _Exit interposition: they run no atexit handlers, so the shim
 * cleans up here what it would at exit. */
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/core/ks.h"
#include "shim/control/server.h"

/* _exit runs no atexit handlers, so the socket file (file mode) is removed
 * here. Only by the process that made it: a vfork or fork child calling
 * _exit after a failed exec must not remove its parent's. */
KS_FORK_PATH static __attribute__((noreturn)) void ks_exit_now(int status)
{
    ks_server_cleanup();
    /* Resolved at init, never here: a fork child may call _exit while the
     * loader's lock that the lookup takes was held by a parent thread. */
    ks_real__exit_t *real = KS_REAL_PEEK(_exit);
    if (real)
        real(status);
    for (;;)
        syscall(SYS_exit_group, status);
}

KS_EXPORT KS_FORK_PATH void _exit(int status) { ks_exit_now(status); }
KS_EXPORT void _Exit(int status) { ks_exit_now(status); }
