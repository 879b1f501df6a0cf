/* killshim.h compiled as strict C99 (see BUILD: -std=c99 -pedantic -Werror),
 * without _GNU_SOURCE: the header must not need either. */
#include "shim/killshim.h"

int ks_header_probe_c(int *fd)
{
    *fd = killshim_stop_fd();
    return killshim_stop_requested();
}
