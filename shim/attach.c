/* The entry of a late load (docs/attach.md): killshim-inject --attach makes
 * a thread of the running program dlopen libkillshim.so (its constructor
 * has then run ks_init) and call this. */
#include <errno.h>

#include "shim/control/control.h"
#include "shim/core/attach.h"
#include "shim/core/ks.h"

/* Exported for injector/attach_stub.S, which finds it with dlsym. Returns
 * 0 once the control server runs, or an errno. BLOCK (the injector's) is
 * not read. Called again (a second attach that raced the first): only
 * makes sure the server runs. */
__attribute__((visibility("default"))) int killshim_attach_start(void *block)
{
    (void)block;
    __atomic_store_n(&ks_loaded_late, 1, __ATOMIC_RELEASE);
    ks_init();
    if (ks_control_state() == KS_CTL_OFF)
        return ENOTSUP;   /* KILLSHIM_DISABLE in its environment, or no signals */
    ks_preattach_note();
    int n = ks_got_patch_all();
    ks_debug("attached: %d GOT slots now lead to the shim's hooks", n);
    ks_control_start_lazy();
    return ks_control_state() == KS_CTL_RUNNING ? 0 : EIO;
}
