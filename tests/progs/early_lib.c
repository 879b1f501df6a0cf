/* Preloaded after libkillshim.so (LD_PRELOAD=shim:this), so the dynamic
 * loader runs this library's constructor before the shim's: the thread it
 * starts is created before the shim's constructor has run. Knows nothing of
 * killshim. The thread names itself "early" and sleeps until the process
 * ends. */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

void *early_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "early");
    for (;;)
        sleep(1000);
    return NULL;
}

__attribute__((constructor)) static void early_start(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, early_main, NULL) == 0)
        pthread_detach(t);
}
