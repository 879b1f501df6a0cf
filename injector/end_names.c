/* Names for the addresses in the shim's messages: the shim has no symbols
 * (it must not read debug information inside the target), so it says
 * module+offset or 0x...; the injector, reading the process's files, puts
 * the function's or the variable's name in. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "end.h"
#include "symbolize.h"

/* An abort's reason names code as module+offset (the shim has no symbols in
 * a signal handler): add the function's name. */
void ksi_name_where(struct ksi_end_result *r)
{
    /* The injector waits on one thread: one cached name (polls are 20 ms). */
    static uint64_t cached;
    static char name[256];
    if (!r->abort_where || !r->pending[0])
        return;
    if (r->abort_where != cached) {
        cached = r->abort_where;
        name[0] = '\0';
        struct ksi_sym *sym = ksi_sym_open(r->pid);
        struct ksi_symbol sy;
        if (sym && ksi_sym_lookup(sym, cached, 0, &sy) == 0)
            snprintf(name, sizeof name, "%s", sy.name);
        ksi_sym_close(sym);
    }
    if (name[0]) {
        size_t n = strlen(r->pending);
        snprintf(r->pending + n, sizeof r->pending - n, " [in %s]", name);
    }
}

/* A cancel refused for a frame: the shim names it "module+0xoffset"
 * (frame_text) and gives an address inside it (frame); put the function's
 * name in its place in MSG. */
void ksi_name_frame(pid_t pid, const struct ks_msg *m, char *msg, size_t cap)
{
    const char *text = ks_msg_get(m, "frame_text");
    uint64_t frame = 0;
    char *at = text && *text ? strstr(msg, text) : NULL;
    if (!at || ks_msg_get_u64(m, "frame", &frame) != 0)
        return;
    struct ksi_sym *sym = ksi_sym_open(pid);
    struct ksi_symbol sy;
    int found = sym && ksi_sym_lookup(sym, frame, 0, &sy) == 0 && sy.name[0];
    ksi_sym_close(sym);
    if (!found)
        return;
    char tail[512];
    snprintf(tail, sizeof tail, "%s", at + strlen(text));
    snprintf(at, cap - (size_t)(at - msg), "%s%s", sy.name, tail);
}

/* A waiting cancel's reason names the lock as an address: add its name
 * (a global mutex of the program is found in its symbol table). */
void ksi_name_lock(struct ksi_end_result *r, const struct ks_msg *m)
{
    uint64_t lock = 0;
    char hex[32], *at;
    if (ks_msg_get_u64(m, "pending_lock", &lock) != 0 || !lock)
        return;
    snprintf(hex, sizeof hex, "0x%" PRIx64, lock);
    if (!(at = strstr(r->pending, hex)))
        return;
    struct ksi_sym *sym = ksi_sym_open(r->pid);
    struct ksi_symbol sy;
    int found = sym && ksi_sym_lookup(sym, lock, 0, &sy) == 0 && sy.name[0];
    ksi_sym_close(sym);
    if (!found)
        return;
    char tail[400], name[300];
    snprintf(tail, sizeof tail, "%s", at + strlen(hex));
    if (sy.offset)
        snprintf(name, sizeof name, "%s+%" PRIu64 " (%s)", sy.name, sy.offset, hex);
    else
        snprintf(name, sizeof name, "%s (%s)", sy.name, hex);
    size_t cap = sizeof r->pending - (size_t)(at - r->pending);
    snprintf(at, cap, "%s%s", name, tail);
}

