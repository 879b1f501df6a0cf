/* See attach.h: the threads that were there before a late load. */
#include "attach.h"

#include <stdlib.h>
#include <string.h>

#include "shim/common/procfs.h"
#include "ks.h"

int ks_loaded_late;

/* Written once by ks_preattach_note; read-only afterwards. Sorted, for
 * bsearch. The pointer is published with a release store after the count:
 * the control server may already run when the note is taken (a second
 * attach, or any client, rang the doorbell between the shim's constructor
 * and its entry, while the loader was busy). */
static pid_t *ks_pre_tids;
static int ks_pre_n;

static int ks_tid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

void ks_preattach_note(void)
{
    if (__atomic_load_n(&ks_pre_tids, __ATOMIC_ACQUIRE))
        return;
    int n = 0;
    pid_t *tids = ks_read_ids("/proc/self/task", &n);
    if (!tids)
        return;
    pid_t self = ks_gettid();
    int k = 0;
    for (int i = 0; i < n; i++)
        if (tids[i] != self)   /* the attach's own thread, which ends now */
            tids[k++] = tids[i];
    qsort(tids, (size_t)k, sizeof *tids, ks_tid_cmp);
    ks_pre_n = k;
    __atomic_store_n(&ks_pre_tids, tids, __ATOMIC_RELEASE);
}

int ks_preattach_has(pid_t tid)
{
    pid_t *tids = __atomic_load_n(&ks_pre_tids, __ATOMIC_ACQUIRE);
    return tids && bsearch(&tid, tids, (size_t)ks_pre_n, sizeof tid, ks_tid_cmp) != NULL;
}
