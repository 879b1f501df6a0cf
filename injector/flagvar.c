/* See flagvar.h. */
#include "flagvar.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "injector.h"
#include "shim/common/procfs.h"

int ksi_flagvar_find(pid_t pid, const char *spec, struct ksi_flagvar *v)
{
    long long value = 1;
    const char *eq = strchr(spec, '=');
    size_t nl = eq ? (size_t)(eq - spec) : strlen(spec);
    memset(v, 0, sizeof *v);
    if (nl == 0 || nl >= sizeof v->name) {
        ksi_err("--flag-symbol takes NAME[=VALUE], not '%s'", spec);
        return KSI_EXIT_USAGE;
    }
    char name[sizeof v->name];
    memcpy(name, spec, nl);
    name[nl] = '\0';
    if (eq) {
        char *end;
        errno = 0;
        value = strtoll(eq + 1, &end, 0);
        if (errno || *end || end == eq + 1) {
            ksi_err("--flag-symbol %s: VALUE must be an integer, not '%s'", name, eq + 1);
            return KSI_EXIT_USAGE;
        }
    }
    struct ksi_sym *sym = ksi_sym_open(pid);
    struct ksi_symdef *d = &v->d;
    int found = sym && ksi_sym_find(sym, name, d) == 0;
    ksi_sym_close(sym);
    if (!found) {
        ksi_err("no variable '%s' in process %d: looked for a data or thread-local symbol in "
                "the symbol tables (.symtab, .dynsym) of every object it maps; a stripped "
                "program has no .symtab", name, (int)pid);
        return KSI_EXIT_ERROR;
    }
    if (d->size != 1 && d->size != 2 && d->size != 4 && d->size != 8) {
        ksi_err("variable '%s' is %" PRIu64 " bytes: --flag-symbol writes only 1, 2, 4 or "
                "8-byte integers (int, bool, atomics of those)", name, d->size);
        return KSI_EXIT_ERROR;
    }
    if (d->size < 8) {
        long long lo = -(1LL << (8 * d->size - 1)), hi = (1LL << (8 * d->size)) - 1;
        if (value < lo || value > hi) {
            ksi_err("--flag-symbol %s: %lld does not fit in %" PRIu64 " bytes", name, value,
                    d->size);
            return KSI_EXIT_USAGE;
        }
    }
    memcpy(v->name, name, nl + 1);
    v->value = (uint64_t)value;
    return KSI_EXIT_OK;
}

/* Where the variable is for thread TID: its address, or, for a
 * thread-local one, the thread's copy ("tls" answers where its block is;
 * the address holds while the thread lives, so the write follows at once).
 * Returns KSI_EXIT_OK, KSI_EXIT_REFUSED with WHY, or another exit code. */
static int ksi_var_addr(struct ksi_client *c, pid_t tid, uint64_t id,
                        const struct ksi_flagvar *v, uint64_t *addr, char *why, size_t cap)
{
    const struct ksi_symdef *d = &v->d;
    if (!d->is_tls) {
        *addr = d->addr;
        return KSI_EXIT_OK;
    }
    char line[160];
    struct ks_msg m;
    snprintf(line, sizeof line, "tls tid=%d id=%" PRIu64 " module=0x%" PRIx64, (int)tid, id,
             d->module_base);
    int rc = ksi_request(c, line, NULL, NULL, &m);
    if (rc != KSI_EXIT_OK)
        return rc;
    uint64_t block = 0;
    int64_t size = 0;
    const char *msg = ks_msg_get(&m, "msg");
    if (strcmp(m.verb, "ok") != 0 || ks_msg_get_u64(&m, "block", &block) != 0 ||
        ks_msg_get_i64(&m, "size", 0, INT64_MAX, &size) != 0) {
        snprintf(why, cap, "cannot locate thread %d's copy of %.64s: %.200s", (int)tid, v->name,
                 msg ? msg : "malformed answer");
        return KSI_EXIT_REFUSED;
    }
    if (d->addr + d->size > (uint64_t)size) {
        snprintf(why, cap, "%.64s is not inside the thread-local block of its module", v->name);
        return KSI_EXIT_REFUSED;
    }
    *addr = block + d->addr;
    return KSI_EXIT_OK;
}

int ksi_flagvar_write(struct ksi_client *c, pid_t tid, uint64_t id, struct ksi_flagvar *v,
                      char *why, size_t cap)
{
    uint64_t addr = 0;
    int rc = ksi_var_addr(c, tid, id, v, &addr, why, cap);
    if (rc != KSI_EXIT_OK)
        return rc;
    unsigned char buf[8];
    memcpy(buf, &v->value, sizeof buf);   /* little-endian: the low bytes */
    struct iovec local = {buf, (size_t)v->d.size};
    struct iovec remote = {(void *)(uintptr_t)addr, (size_t)v->d.size};
    ssize_t n = process_vm_writev(ks_live_task(c->pid), &local, 1, &remote, 1, 0);
    if (n == (ssize_t)v->d.size) {
        v->written = 1;
        return KSI_EXIT_OK;
    }
    int err = n < 0 ? errno : EFAULT;
    snprintf(why, cap, "cannot write %.64s at 0x%" PRIx64 " (%d bytes): %.64s", v->name, addr,
             (int)v->d.size, err == EFAULT ? "not mapped, or read-only" : strerror(err));
    return KSI_EXIT_REFUSED;
}
