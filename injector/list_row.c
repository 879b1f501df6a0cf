/* See list.h: a listing's row as text, without printf. */
#include "list.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "syscalls.h"

void ksi_fmt_secs(char *buf, size_t cap, long long ms)
{
    char d[32], *p;
    if (ms < 0 || cap < 32 || (ms < 60 * 1000 && ms % 10 == 5)) {
        /* A tie in the decimal is decided by the double's binary value: as
         * printf does it, by printf. */
        if (ms < 60 * 1000)
            snprintf(buf, cap, "%.2fs", (double)ms / 1000.0);
        else if (ms < 3600 * 1000)
            snprintf(buf, cap, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
        else
            snprintf(buf, cap, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
        return;
    }
    unsigned long long a, b;
    char unit1, unit2;
    if (ms < 60 * 1000) {
        /* ms % 10 != 5: ms/1000.0 is never near a tie in its hundredths,
         * so rounding the integer gives printf's %.2f digits. */
        unsigned long long c = ((unsigned long long)ms + 5) / 10;
        a = c / 100, b = c % 100, unit1 = '.', unit2 = 's';
    } else if (ms < 3600 * 1000) {
        a = (unsigned long long)ms / 60000, b = (unsigned long long)ms / 1000 % 60;
        unit1 = 'm', unit2 = 's';
    } else {
        a = (unsigned long long)ms / 3600000, b = (unsigned long long)ms / 60000 % 60;
        unit1 = 'h', unit2 = 'm';
    }
    p = ksi_line_digits(d + sizeof d, a);
    size_t n = (size_t)(d + sizeof d - p);
    memcpy(buf, p, n);
    buf[n++] = unit1;
    buf[n++] = (char)('0' + b / 10);
    buf[n++] = (char)('0' + b % 10);
    buf[n++] = unit2;
    buf[n] = '\0';
}

/* The note column: "; "-separated parts, cut at 127 bytes as the
 * snprintf into a 128-byte buffer cut it. */
struct ksi_note {
    char b[128];
    size_t n;
    int parts;
};

static void ksi_note_put(struct ksi_note *nt, const char *s)
{
    size_t n = strlen(s);
    if (n > sizeof nt->b - 1 - nt->n)
        n = sizeof nt->b - 1 - nt->n;
    memcpy(nt->b + nt->n, s, n);
    nt->n += n;
    nt->b[nt->n] = '\0';
}

static void ksi_note_add(struct ksi_note *nt, const char *a, const char *b)
{
    if (nt->parts++)
        ksi_note_put(nt, "; ");
    ksi_note_put(nt, a);
    if (b)
        ksi_note_put(nt, b);
}

__attribute__((format(printf, 2, 3))) static void ksi_note_fmt(struct ksi_note *nt,
                                                               const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ksi_note_add(nt, tmp, NULL);
}

static void ksi_row_note(const struct ksi_row *r, struct ksi_note *nt)
{
    if (r->py_name[0])
        ksi_note_fmt(nt, "'%s'", r->py_name);
    if (strcmp(r->py_gil, "held") == 0)
        ksi_note_add(nt, "holds the GIL", NULL);
    else if (strcmp(r->py_gil, "waits") == 0)
        ksi_note_add(nt, "waits for the GIL", NULL);
    if (strcmp(r->role, "pre-attach") == 0)
        ksi_note_add(nt, "locks unknown", NULL);
    else if (r->locks)
        ksi_note_fmt(nt, "holds %lld lock%s", r->locks, r->locks == 1 ? "" : "s");
    if (r->wait_mutex && r->wait_owner > 0)
        ksi_note_fmt(nt, "waits for mutex 0x%llx held by %lld", r->wait_mutex, r->wait_owner);
    else if (r->wait_mutex)
        ksi_note_fmt(nt, "waits for mutex 0x%llx", r->wait_mutex);
    else if (r->syscall >= 0 && ksi_syscall_name(r->syscall))
        ksi_note_add(nt, "in ", ksi_syscall_name(r->syscall));
}

void ksi_row_text(const struct ksi_row *r, struct ksi_line *l)
{
    char num[32], cpu[32], age[32];
    struct ksi_note nt = {.n = 0, .parts = 0};
    nt.b[0] = '\0';
    ksi_row_note(r, &nt);
    ksi_fmt_secs(cpu, sizeof cpu, r->cpu_ms);
    ksi_fmt_secs(age, sizeof age, r->age_ms);
    const char *kind = strcmp(r->role, "foreign") == 0 ? "unregistered"
                     : r->python && strcmp(r->role, "app") == 0 ? "python" : r->role;
    l->n = 0;
    char *t = ksi_line_digits(num + sizeof num - 1, (unsigned long long)(r->tid < 0 ? -r->tid : r->tid));
    if (r->tid < 0)
        *--t = '-';
    num[sizeof num - 1] = '\0';
    ksi_line_left(l, t, 8);
    ksi_line_put(l, " ", 1);
    ksi_line_left(l, r->name, 16);
    ksi_line_put(l, " ", 1);
    /* %-24.*s: cut at 24 bytes unless the start is whole. */
    const char *start = r->start[0] ? r->start : "?";
    size_t sn = strlen(start), prec = r->start_whole ? strlen(r->start) : 24;
    if (sn > prec)
        sn = prec;
    ksi_line_put(l, start, sn);
    ksi_line_pad(l, 24, sn);
    ksi_line_put(l, " ", 1);
    ksi_line_left(l, r->state, 5);
    ksi_line_put(l, " ", 1);
    ksi_line_right(l, cpu, 9);
    ksi_line_put(l, " ", 1);
    ksi_line_right(l, age, 9);
    ksi_line_put(l, "  ", 2);
    ksi_line_left(l, kind, 10);
    ksi_line_put(l, " ", 1);
    ksi_line_put(l, nt.b, nt.n);
    ksi_line_put(l, "\n", 1);
}
