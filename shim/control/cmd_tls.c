/* "tls": where a thread's copy of a module's static thread-local block is,
 * so that a client can write a thread-local stop variable itself
 * (killshim-inject --flag-symbol), through the kernel. Read access: it gives
 * an address, like "list" and "stack" do. See docs/PROTOCOL.md. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#include "commands.h"
#include "shim/deliver/deliver.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"

void ks_cmd_tls(const struct ks_msg *req, struct ks_out *out)
{
    int64_t tid;
    uint64_t id = 0, module;
    if (ks_msg_get_i64(req, "tid", 1, 1 << 30, &tid) != 0 ||
        ks_msg_get_u64(req, "module", &module) != 0 || ks_msg_get_u64(req, "id", &id) == EINVAL) {
        ks_out_err(out, "bad-request", "tls tid=N [id=M] module=ADDR (an address inside the "
                   "module whose thread-local block is wanted)");
        return;
    }
    char why[256];
    intptr_t from_tp;
    size_t size;
    int rc = ks_tls_block_offset(module, &from_tp, &size, why, sizeof why);
    if (rc) {
        ks_out_err(out, "refused", "%s", why);
        return;
    }
    /* The address is valid while the thread is linked; the client writes
     * after this answer, so it checks afterwards ("status" with the id)
     * that the thread was still alive when it wrote (docs/security.md). */
    uintptr_t block = 0;
    uint64_t tid_id = 0;
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find((pid_t)tid);
    if (t && (!id || t->id == id)) {
        block = (uintptr_t)t->handle + (uintptr_t)from_tp;
        tid_id = t->id;
    }
    ks_registry_unlock();
    if (!block) {
        ks_out_err(out, "no-thread", "no thread %d%s tracked by the shim in process %d",
                   (int)tid, id ? " with that id" : "", (int)ks_getpid());
        return;
    }
    ks_out_word(out, "ok");
    ks_out_i64(out, "tid", tid);
    ks_out_i64(out, "id", (int64_t)tid_id);
    ks_out_hex(out, "block", block);
    ks_out_i64(out, "size", (int64_t)size);
    ks_out_eol(out);
}
