/* killshim-inject --stack: placeholder until stack capture lands (issue 4). */
#include "injector.h"

int ksi_do_stack(const struct ksi_opts *o)
{
    (void)o;
    ksi_err("--stack is not available in this build yet");
    return KSI_EXIT_ERROR;
}
