/* A plugin that starts threads and takes a mutex, for deepbind_main.c. When
 * it is loaded with RTLD_DEEPBIND, its calls to pthread_create and
 * pthread_mutex_lock bind to libc's own, ahead of any preloaded library. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_mutex_t plugin_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t plugin_cv = PTHREAD_COND_INITIALIZER;
static int plugin_started, plugin_stop;

void *plugin_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&plugin_mu);
    printf("plugin tid=%d\n", gettid());
    fflush(stdout);
    plugin_started++;
    pthread_cond_broadcast(&plugin_cv);
    while (!plugin_stop)
        pthread_cond_wait(&plugin_cv, &plugin_mu);
    pthread_mutex_unlock(&plugin_mu);
    return NULL;
}

/* Starts N workers and returns once all run. */
int plugin_start(int n, pthread_t *out)
{
    for (int i = 0; i < n; i++)
        if (pthread_create(&out[i], NULL, plugin_worker, NULL) != 0)
            return -1;
    pthread_mutex_lock(&plugin_mu);
    while (plugin_started < n)
        pthread_cond_wait(&plugin_cv, &plugin_mu);
    pthread_mutex_unlock(&plugin_mu);
    return 0;
}

void plugin_stop_all(void)
{
    pthread_mutex_lock(&plugin_mu);
    plugin_stop = 1;
    pthread_cond_broadcast(&plugin_cv);
    pthread_mutex_unlock(&plugin_mu);
}
