/* killshim-inject PID TID: placeholder until thread ending lands (issue 3). */
#include "injector.h"

int ksi_do_end(const struct ksi_opts *o)
{
    (void)o;
    ksi_err("ending threads is not available in this build yet");
    return KSI_EXIT_ERROR;
}
