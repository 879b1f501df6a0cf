/* The report of killshim-inject PID TID: text or JSON on stdout. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "end.h"
#include "symbolize.h"

const char *ksi_end_mode_that_worked(const struct ksi_end_result *r)
{
    if (r->outcome != KSI_GONE)
        return NULL;
    if (r->process_exited)
        return "none: the process exited";
    if (r->pre_attach)   /* no grave: what was asked, and that it is gone */
        return strstr(r->requested, "abort") ? "abort, as far as can be seen"
             : strstr(r->requested, "cancel") ? "cancel, as far as can be seen"
             : strstr(r->requested, "flag") ? "flag, as far as can be seen" : "unknown";
    if (strcmp(r->how, "aborted") == 0)
        return "abort";
    if (strcmp(r->how, "cancelled") == 0)
        return strstr(r->requested, "cancel") ? "cancel" : "none: the program cancelled it";
    if ((strcmp(r->how, "returned") == 0 || strcmp(r->how, "exited") == 0) && r->py.exc[0])
        return "python";   /* the raised exception ended it (docs/python.md) */
    if (strcmp(r->how, "returned") == 0 || strcmp(r->how, "exited") == 0)
        return strstr(r->requested, "flag") ? "flag" : "none: it ended by itself";
    return "unknown: it ended long ago (out of the graveyard)";
}

/* What pthread_join on the thread returns, by how it ended. */
static const char *ksi_join_value(const struct ksi_end_result *r)
{
    if (strcmp(r->how, "cancelled") == 0 || strcmp(r->how, "aborted") == 0)
        return "PTHREAD_CANCELED";
    if (strcmp(r->how, "returned") == 0)
        return "what its start routine returned";
    if (strcmp(r->how, "exited") == 0)
        return "the value it passed to pthread_exit";
    return "unknown";
}

static const char *ksi_site_kind(const struct ksi_end_result *r)
{
    if (strcmp(r->how, "returned") == 0)
        return "returned from its start routine";
    if (strcmp(r->how, "exited") == 0)
        return "called pthread_exit";
    if (strcmp(r->how, "cancelled") == 0)
        return "cancelled in this blocking call";
    if (strcmp(r->how, "aborted") == 0)
        return "aborted here";
    return "";
}

/* What the shim's abort_how words mean (docs/abort.md). */
static const char *ksi_abort_how_text(const char *how)
{
    static const char *const m[][2] = {
        {"frame", "from a frame without cleanups"},
        {"call", "at a call of the program, as if the callee had thrown"},
        {"return", "as a library call returned, as if it had thrown"},
        {"unlock", "at the unlock that released its last lock"},
        {"cond", "from pthread_cond_wait, its mutex re-acquired"},
        {"forced", "--force: from where it was"},
        {"discarded", "--force: one frame's cleanups skipped"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strcmp(how, m[i][0]) == 0)
            return m[i][1];
    return "?";
}

/* "symbol+0xoff (module)" for ADDR in PID, or the bare address. */
static void ksi_fmt_addr(pid_t pid, uint64_t addr, int code, char *buf, size_t cap)
{
    struct ksi_symbol sy;
    struct ksi_sym *sym = ksi_sym_open(pid);
    int ok = sym && ksi_sym_lookup(sym, addr, 0, &sy) == 0 && sy.name[0];
    ksi_sym_close(sym);
    if (!ok && sym && sy.module[0] && code)
        snprintf(buf, cap, "%s+0x%" PRIx64, sy.module, sy.module_offset);
    else if (!ok)
        snprintf(buf, cap, "0x%" PRIx64, addr);
    else if (sy.offset && code)
        snprintf(buf, cap, "%s+0x%" PRIx64, sy.name, sy.offset);
    else if (sy.offset)
        snprintf(buf, cap, "%s+%" PRIu64 " (0x%" PRIx64 ")", sy.name, sy.offset, addr);
    else
        snprintf(buf, cap, "%s (0x%" PRIx64 ")", sy.name, addr);
}

struct ksi_site {
    int known;
    struct ksi_symbol sy;     /* sy.module is set whenever a module holds it */
    int have_sym;
};

static void ksi_symbolize_site(pid_t pid, uint64_t addr, struct ksi_site *s)
{
    memset(s, 0, sizeof *s);
    if (!addr)
        return;
    s->known = 1;
    struct ksi_sym *sym = ksi_sym_open(pid);
    if (sym)
        s->have_sym = ksi_sym_lookup(sym, addr, 1, &s->sy) == 0;
    ksi_sym_close(sym);
}

static void ksi_fmt_site(const struct ksi_site *s, uint64_t addr, char *buf, size_t cap)
{
    if (!s->known) {
        snprintf(buf, cap, "unknown");
        return;
    }
    size_t n = 0;
    if (s->have_sym && s->sy.offset)
        n = (size_t)snprintf(buf, cap, "%s+0x%" PRIx64 " (%s)", s->sy.name, s->sy.offset,
                             s->sy.module);
    else if (s->have_sym)
        n = (size_t)snprintf(buf, cap, "%s (%s)", s->sy.name, s->sy.module);
    else if (s->sy.module[0])   /* no symbol: a stripped object, or libc without debug info */
        n = (size_t)snprintf(buf, cap, "%s+0x%" PRIx64 " (0x%" PRIx64 ")", s->sy.module,
                             s->sy.module_offset, addr);
    else
        n = (size_t)snprintf(buf, cap, "0x%" PRIx64, addr);
    if (s->sy.file[0] && n < cap)
        snprintf(buf + n, cap - n, " at %s:%d", s->sy.file, s->sy.line);
}

/* The locks it left, named, and who waits for each now. */
static void ksi_report_left(const struct ksi_end_result *r)
{
    printf("  left behind: %d pthread mutex/rwlock lock%s still held (other threads that "
           "wait for %s block forever)", r->locks_left, r->locks_left == 1 ? "" : "s",
           r->locks_left == 1 ? "it" : "them");
    for (int i = 0; i < r->nleft; i++) {
        char name[300];
        ksi_fmt_addr(r->pid, r->left[i], 0, name, sizeof name);
        printf("%s %s", i ? "," : ":", name);
    }
    printf("\n");
    for (int i = 0; i < r->nleft; i++) {
        int n = 0;
        for (int k = 0; k < r->nwaiters; k++) {
            if (r->waiters[k].lock != r->left[i])
                continue;
            if (!n++)
                printf("  waiting for 0x%" PRIx64 " now:", r->left[i]);
            printf("%s thread %ld (%s)", n > 1 ? "," : "", r->waiters[k].tid, r->waiters[k].name);
        }
        if (n)
            printf("\n");
    }
}

/* The first line: what became of the thread. */
static void ksi_report_headline(const struct ksi_end_result *r)
{
    printf("thread %d (%s) of process %d: ", (int)r->tid, r->name, (int)r->pid);
    if (r->outcome == KSI_GONE) {
        const char *mode = ksi_end_mode_that_worked(r);
        if (r->process_exited)
            printf("gone: the whole process exited, %.2f s after the first request\n", r->elapsed_s);
        else if (r->locks_left > 0)
            printf("gone, but it left %d lock%s held: %s (mode %s) after %.2f s\n",
                   r->locks_left, r->locks_left == 1 ? "" : "s", r->how[0] ? r->how : "ended",
                   mode, r->elapsed_s);
        else
            printf("gone: %s (mode %s) after %.2f s\n", r->how[0] ? r->how : "ended", mode,
                   r->elapsed_s);
    } else if (r->outcome == KSI_PENDING) {
        printf("still alive after %.2f s: %s\n", r->elapsed_s,
               r->pending[0] ? r->pending : "no reason known");
        if (strncmp(r->pending, "cancel waits:", 13) == 0)
            printf("  the cancel was never issued: it lapses now that killshim-inject stops "
                   "asking%s\n", r->nsteps > 1 ? " (an earlier step's request stays)" : "");
        else
            printf("  the request stays pending: it may still end later\n");
    } else {
        int flagged = 0;
        for (int i = 0; i < r->nsteps; i++)
            flagged |= r->steps[i].accepted;
        printf(flagged ? "refused: only its stop flag was set (it ends if the program reads it)\n"
                       : "refused: nothing was done to it\n");
    }
}

static void ksi_report_text(const struct ksi_end_result *r, const struct ksi_site *site)
{
    ksi_report_headline(r);
    printf("  steps:       ");
    for (int i = 0; i < r->nsteps; i++)
        printf("%s%s at %.2f s%s", i ? ", " : "", r->steps[i].mode, r->steps[i].at_s,
               r->steps[i].accepted ? "" : " (refused)");
    printf("\n");
    for (int i = 0; i < r->nsteps; i++)
        if (!r->steps[i].accepted)
            printf("  %s refused: %s\n", r->steps[i].mode, r->steps[i].message);
    ksi_py_report_text(r);
    if (r->outcome == KSI_GONE && r->pre_attach)
        printf("  left behind: not known: it started before the shim was attached, which saw "
               "neither the locks it took before nor how it ended\n");
    if (r->outcome != KSI_GONE || r->process_exited || !r->how[0])
        return;
    char where[800];
    ksi_fmt_site(site, r->site, where, sizeof where);
    printf("  left from:   %s%s%s\n", where, site->known ? ", " : "",
           site->known ? ksi_site_kind(r) : "");
    if (r->abort_how[0])
        printf("  abort:       %s (%s)\n", r->abort_how, ksi_abort_how_text(r->abort_how));
    if (r->ncleanup) {
        printf("  cleanups in:");
        for (int i = 0; i < r->ncleanup; i++) {
            char name[300];
            ksi_fmt_addr(r->pid, r->cleanup[i], 1, name, sizeof name);
            printf("%s %s", i ? "," : "", name);
        }
        printf("\n");
    }
    if (r->locks_left) {
        ksi_report_left(r);
    } else if (r->abort_note[0]) {
        printf("  left behind: no locks (its cleanups released what it held when it fired)\n");
    } else {
        printf("  left behind: no locks (it held no pthread mutex or rwlock)\n");
    }
    if (r->abort_note[0])
        printf("  when fired:  %s\n", r->abort_note);
    printf("  pthread_join returns: %s\n", ksi_join_value(r));
}

static json_object *ksi_json_str(const char *s) { return s && *s ? json_object_new_string(s) : NULL; }

/* [{"address": "0x...", "name": "held_mu (0x...)", "waiters": [tid...]}...] */
static json_object *ksi_json_left(const struct ksi_end_result *r)
{
    json_object *arr = json_object_new_array();
    for (int i = 0; i < r->nleft; i++) {
        json_object *l = json_object_new_object(), *w = json_object_new_array();
        char hex[32], name[300];
        snprintf(hex, sizeof hex, "0x%" PRIx64, r->left[i]);
        ksi_fmt_addr(r->pid, r->left[i], 0, name, sizeof name);
        json_object_object_add(l, "address", json_object_new_string(hex));
        json_object_object_add(l, "name", json_object_new_string(name));
        for (int k = 0; k < r->nwaiters; k++)
            if (r->waiters[k].lock == r->left[i])
                json_object_array_add(w, json_object_new_int64(r->waiters[k].tid));
        json_object_object_add(l, "waiters", w);
        json_object_array_add(arr, l);
    }
    return arr;
}

/* {"address", "kind", "symbol", "offset", "module", "module_offset",
 * "file", "line"} of where it left, NULL if unknown. */
static json_object *ksi_json_site(const struct ksi_end_result *r, const struct ksi_site *site)
{
    char hex[32];
    if (!site->known)
        return NULL;
    json_object *js = json_object_new_object();
    snprintf(hex, sizeof hex, "0x%" PRIx64, r->site);
    json_object_object_add(js, "address", json_object_new_string(hex));
    json_object_object_add(js, "kind", json_object_new_string(ksi_site_kind(r)));
    if (site->have_sym) {
        json_object_object_add(js, "symbol", ksi_json_str(site->sy.name));
        json_object_object_add(js, "offset", json_object_new_int64((int64_t)site->sy.offset));
    }
    if (site->sy.module[0]) {
        json_object_object_add(js, "module", ksi_json_str(site->sy.module));
        snprintf(hex, sizeof hex, "0x%" PRIx64, site->sy.module_offset);
        json_object_object_add(js, "module_offset", json_object_new_string(hex));
    }
    json_object_object_add(js, "file", ksi_json_str(site->sy.file));
    json_object_object_add(js, "line", site->sy.line ? json_object_new_int(site->sy.line) : NULL);
    return js;
}

/* {"how", "cleanups", "locks_left", "note"} of an abort. */
static json_object *ksi_json_abort(const struct ksi_end_result *r)
{
    json_object *ab = json_object_new_object();
    json_object_object_add(ab, "how", json_object_new_string(r->abort_how));
    json_object *cl = json_object_new_array(), *lf = json_object_new_array();
    for (int i = 0; i < r->ncleanup; i++) {
        char name[300];
        ksi_fmt_addr(r->pid, r->cleanup[i], 1, name, sizeof name);
        json_object_array_add(cl, json_object_new_string(name));
    }
    for (int i = 0; i < r->nleft; i++) {
        char name[300];
        ksi_fmt_addr(r->pid, r->left[i], 0, name, sizeof name);
        json_object_array_add(lf, json_object_new_string(name));
    }
    json_object_object_add(ab, "cleanups", cl);
    json_object_object_add(ab, "locks_left", lf);
    json_object_object_add(ab, "note", ksi_json_str(r->abort_note));
    return ab;
}

static void ksi_report_json(const struct ksi_end_result *r, const struct ksi_site *site)
{
    static const char *const outcome[] = {"gone", "pending", "refused"};
    json_object *root = json_object_new_object();
    json_object_object_add(root, "pid", json_object_new_int(r->pid));
    json_object_object_add(root, "tid", json_object_new_int(r->tid));
    json_object_object_add(root, "id", json_object_new_int64((int64_t)r->id));
    json_object_object_add(root, "name", json_object_new_string(r->name));
    json_object_object_add(root, "result", json_object_new_string(outcome[r->outcome]));
    json_object_object_add(root, "elapsed_ms", json_object_new_int64((int64_t)(r->elapsed_s * 1000)));
    json_object *steps = json_object_new_array();
    for (int i = 0; i < r->nsteps; i++) {
        json_object *s = json_object_new_object();
        json_object_object_add(s, "mode", json_object_new_string(r->steps[i].mode));
        json_object_object_add(s, "at_ms", json_object_new_int64((int64_t)(r->steps[i].at_s * 1000)));
        json_object_object_add(s, "accepted", json_object_new_boolean(r->steps[i].accepted));
        json_object_object_add(s, "message", ksi_json_str(r->steps[i].message));
        json_object_array_add(steps, s);
    }
    json_object_object_add(root, "steps", steps);
    int gone = r->outcome == KSI_GONE;
    json_object_object_add(root, "mode", gone ? ksi_json_str(ksi_end_mode_that_worked(r)) : NULL);
    json_object_object_add(root, "how", gone ? ksi_json_str(r->how) : NULL);
    json_object_object_add(root, "process_exited", json_object_new_boolean(r->process_exited));
    json_object_object_add(root, "pre_attach", json_object_new_boolean(r->pre_attach));
    json_object_object_add(root, "pending", gone ? NULL : ksi_json_str(r->pending));
    json_object_object_add(root, "left_from", gone ? ksi_json_site(r, site) : NULL);
    json_object_object_add(root, "python", ksi_py_report_json(r));
    json_object_object_add(root, "locks_left", gone && r->how[0] ? json_object_new_int(r->locks_left) : NULL);
    if (gone && r->how[0])
        json_object_object_add(root, "left_locks", ksi_json_left(r));
    json_object_object_add(root, "join_value", gone && r->how[0] ? ksi_json_str(ksi_join_value(r)) : NULL);
    if (gone && r->abort_how[0])
        json_object_object_add(root, "abort", ksi_json_abort(r));
    puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
}

void ksi_end_report(const struct ksi_opts *o, const struct ksi_end_result *r)
{
    struct ksi_site site;
    memset(&site, 0, sizeof site);
    if (r->outcome == KSI_GONE && !r->process_exited)
        ksi_symbolize_site(r->pid, r->site, &site);
    if (o->json)
        ksi_report_json(r, &site);
    else
        ksi_report_text(r, &site);
}
