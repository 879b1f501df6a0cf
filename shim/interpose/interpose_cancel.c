/* pthread_setcancelstate and pthread_setcanceltype interposition: the
 * thread's cancel state and type are remembered in its record, so a cancel
 * request to a thread that disabled cancellation is reported as such
 * instead of waited on blindly (deliver_cancel.c). */
#include <errno.h>
#include <pthread.h>

#include "shim/core/ks.h"
#include "shim/core/registry.h"

KS_EXPORT int pthread_setcancelstate(int state, int *old)
{
    ks_real_pthread_setcancelstate_t *real = KS_REAL(pthread_setcancelstate);
    if (KS_UNLIKELY(!real))
        return ENOSYS;
    int rc = real(state, old);
    if (rc == 0)
        __atomic_store_n(&ks_self()->cancel_disabled, state == PTHREAD_CANCEL_DISABLE,
                         __ATOMIC_RELAXED);
    return rc;
}

KS_EXPORT int pthread_setcanceltype(int type, int *old)
{
    ks_real_pthread_setcanceltype_t *real = KS_REAL(pthread_setcanceltype);
    if (KS_UNLIKELY(!real))
        return ENOSYS;
    int rc = real(type, old);
    if (rc == 0)
        __atomic_store_n(&ks_self()->cancel_async, type == PTHREAD_CANCEL_ASYNCHRONOUS,
                         __ATOMIC_RELAXED);
    return rc;
}
