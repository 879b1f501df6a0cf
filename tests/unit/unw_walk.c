/* See unw_walk.h. */
#include "unw_walk.h"

#include <string.h>

#include "shim/core/blocking.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"
#include "shim/safepoint/safepoint.h"
#include "shim/unwind/unwind.h"

int ks_unw_walk_safe(ucontext_t *uc)
{
    struct ks_thread *self = ks_self();
    if (self->shim_depth || __atomic_load_n(&self->locks_held, __ATOMIC_RELAXED) > 0 ||
        ks_block_self()->depth)
        return 0;
    unw_cursor_t cur;
    if (!ks_unw_ready() || ks_unw.init_local2(&cur, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) != 0)
        return 0;
    uintptr_t start = ks_thread_start_addr();
    int app_frames = 0, base_left = -1;
    for (int n = 0; n < 512; n++) {
        unw_word_t ip = 0;
        ks_unw.get_reg(&cur, UNW_REG_IP, &ip);
        if (ks_unw.is_signal_frame(&cur) > 0)
            return 0;
        struct ks_pc_info pi;
        int kind = ks_safepoint_lookup(n == 0 ? ip : ip - 1, &pi);
        int stub = n == 0 && kind == KS_MOD_LIBC && ks_uc_at_syscall(uc);
        if (kind == KS_MOD_SHIM && app_frames) {
            unw_proc_info_t proc;
            memset(&proc, 0, sizeof proc);
            return ks_unw.get_proc_info(&cur, &proc) == 0 && proc.start_ip == start;
        }
        if (stub) {
            /* checked at the next frame */
        } else if (base_left >= 0) {
            if (base_left-- == 0)
                return 0;
        } else if (kind == KS_MOD_APP) {
            app_frames++;
        } else if (kind == KS_MOD_LIBC && app_frames) {
            base_left = 2;   /* KS_BASE_FRAMES - 1 */
        } else {
            return 0;
        }
        int rc = ks_unw.step(&cur);
        if (rc == 0)
            return app_frames > 0;
        if (rc < 0)
            return 0;
    }
    return 0;
}

