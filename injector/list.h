/* The listing's rows (list.c) and their text (list_row.c). */
#ifndef KSI_LIST_H
#define KSI_LIST_H

#include <stddef.h>

#include "textline.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ksi_row {
    long long tid, cpu_ms, age_ms, locks;
    char name[64], role[16], state[4], start[256];
    unsigned long long start_addr, wait_mutex;
    long long wait_owner, syscall;   /* 0 / -1: none */
    int registered;
    int python;               /* CPython has a thread state for it (py_ident) */
    char py_name[64];         /* its threading.Thread name */
    char py_gil[12];          /* held, waits, released; "" not known */
    int start_whole;          /* START is module+offset: never cut (addr2line takes it) */
};

/* Row R as the table shows it, ended by a newline, into L (overwritten):
 * the bytes printf("%-8lld %-16s %-24.*s %-5s %9s %9s  %-10s %s\n", ...)
 * wrote before (tests/unit/list_row_test compares them). */
void ksi_row_text(const struct ksi_row *r, struct ksi_line *l);

/* MS as the CPU and AGE columns show it ("%.2fs", "%lldm%02llds" or
 * "%lldh%02lldm") into BUF (at least 32 bytes). */
void ksi_fmt_secs(char *buf, size_t cap, long long ms);

#ifdef __cplusplus
}
#endif
#endif
