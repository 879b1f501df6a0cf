/* pipe2: the program's calls pass straight through. The one call that fails
 * is libunwind's, made from its one-time init while the shim runs that init
 * (unwind_mem.h): libunwind ignores the failure, keeps no pipe, and never
 * needs one, since the shim's accessor checks memory without an fd. */
#include <errno.h>
#include <unistd.h>

#include "shim/core/ks.h"
#include "shim/core/real.h"
#include "shim/unwind/unwind_mem.h"

KS_EXPORT int pipe2(int fds[2], int flags)
{
    if (KS_UNLIKELY(ks_unw_mem_in_init())) {
        errno = EMFILE;
        return -1;
    }
    return KS_CALL_OR(pipe2, (errno = ENOSYS, -1), (fds, flags));
}
