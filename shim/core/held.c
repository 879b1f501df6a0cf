/* See held.h. */
#include "held.h"

int ks_lock_uncount(struct ks_thread *self, void *obj, ks_lock_mark *mark)
{
    int n = self->locks_held;
    int found = 0;
    for (int i = 0; i < n && i < KS_HELD_MAX; i++)
        found |= self->held[i] == obj;
    /* Beyond the remembered ones OBJ may be held or not: count it held
     * (as ks_held_remove does) only then. */
    if (!found && !(n > KS_HELD_MAX))
        return 0;
    return ks_held_take(self, obj, mark) == 0;
}

void ks_lock_recount(struct ks_thread *self, void *obj, ks_lock_mark mark)
{
    ks_held_put(self, obj, mark);
}
